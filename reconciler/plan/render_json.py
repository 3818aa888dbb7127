"""Plan renderer, JSON form: `Plan.to_json()` as stable text (pipeline: plan -> render).

The shape is documented by schemas/plan.schema.json. Keys are sorted and the indentation fixed,
so the same plan always gives the same bytes; every line passes through `mask`.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from reconciler.plan.model import Plan


def _unmasked(text: str) -> str:
    return text


def render_json(plan: Plan, *, mask: Callable[[str], str] = _unmasked) -> str:
    """The plan as indented JSON text with sorted keys, each line masked."""
    text = json.dumps(plan.to_json(), indent=2, sort_keys=True, ensure_ascii=False)
    # Split on "\n" only: JSON strings may hold U+2028 and friends, which splitlines() would cut.
    return "\n".join(mask(line) for line in text.split("\n"))
