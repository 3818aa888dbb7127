"""Plan renderer, JSON form: `Plan.to_json()` as stable text (pipeline: plan -> render).

The shape is documented by schemas/plan.schema.json. Keys are sorted and the separators fixed,
so the same plan always gives the same bytes. The text is compact, one line, as Terraform's
`show -json` is: that keeps json's C encoder (indenting falls back to pure Python, which costs
more than planning for a thousand deployments); pipe it through `jq` to read it.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from reconciler.plan.model import Plan


def _unmasked(text: str) -> str:
    return text


def render_json(plan: Plan, *, mask: Callable[[str], str] = _unmasked) -> str:
    """The plan as compact JSON text with sorted keys, masked."""
    return mask(json.dumps(plan.to_json(), sort_keys=True, ensure_ascii=False))
