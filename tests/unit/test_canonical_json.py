"""canonical_json: the text resources are stored and compared as (reconciler/model/resources.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from reconciler.model.resources import canonical_json


def test_keys_are_sorted_separators_compact_and_text_kept() -> None:
    value = {"b": [1, 2.5, None, True], "a": {"z": "über", "y": {}}, "c": "line\nbreak"}
    assert canonical_json(value) == (
        '{"a":{"y":{},"z":"über"},"b":[1,2.5,null,true],"c":"line\\nbreak"}'
    )
    assert canonical_json(value) == json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


def test_a_value_that_contains_itself_fails_as_json_dumps_does() -> None:
    value: dict[str, Any] = {"name": "loop"}
    value["again"] = [value]
    with pytest.raises(ValueError, match="Circular reference detected"):
        canonical_json(value)
