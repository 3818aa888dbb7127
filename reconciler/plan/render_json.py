"""Plan renderer, JSON form: `Plan.to_json()` as stable text (pipeline: plan -> render).

The shape is documented by schemas/plan.schema.json. Keys are sorted and the separators fixed,
so the same plan always gives the same bytes. The text is compact, one line, as Terraform's
`show -json` is: that keeps json's C encoder (indenting falls back to pure Python, which costs
more than planning for a thousand deployments); pipe it through `jq` to read it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from reconciler.core.parallel import map_forked
from reconciler.plan.model import Change, Plan


def _unmasked(text: str) -> str:
    return text


_HEAD = '{"changes": ['
_CHUNK_CHANGES = 25


def render_json(plan: Plan, *, mask: Callable[[str], str] = _unmasked) -> str:
    """The plan as compact JSON text with sorted keys, masked.

    The changes, most of the text, are written apart, on every core for a large plan (in
    pieces of 25), then put where `json.dumps` of the whole would put them: `changes` is the
    first key, and list items are separated by ", "."""
    rest = _dumps(plan.to_json(changes=False))
    assert rest.startswith(_HEAD + "]")
    changes = plan.changes
    chunks = [changes[i : i + _CHUNK_CHANGES] for i in range(0, len(changes), _CHUNK_CHANGES)]
    texts = map_forked(chunks, _changes_text, size=_text_size)
    return mask(_HEAD + ", ".join(texts) + rest[len(_HEAD) :])


def _changes_text(changes: Sequence[Change]) -> str:
    return ", ".join(_dumps(change.to_json()) for change in changes)


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _text_size(changes: Sequence[Change]) -> int:
    return sum(len(c.desired.spec_json) if c.desired is not None else 100 for c in changes)
