"""The values part of the store contract (ValueStore in reconciler/store/base.py), for every
backend: variables keep their JSON value, blocks are kept by type and name, step results by
the hash of their inputs, all written in a transaction.
"""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.store import BlockRecord, Store

# --- variables and blocks ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["text", "", 0, 3.5, True, None, ["a", 1], {"nested": {"list": [1, 2]}}, "ünïcødé ☕"],
    ids=repr,
)
def test_a_variable_keeps_its_json_value(store: Store, value: Any) -> None:
    with store.transaction() as tx:
        tx.set_variable("v", value)

    assert store.variables() == {"v": value}
    assert store.observe().variables == {"v": value}


def test_setting_a_variable_again_replaces_it_and_delete_says_whether_it_existed(
    store: Store,
) -> None:
    with store.transaction() as tx:
        tx.set_variable("region", "emea")
        tx.set_variable("keep", 1)
    with store.transaction() as tx:
        tx.set_variable("region", "apac")
    assert store.variables() == {"keep": 1, "region": "apac"}

    with store.transaction() as tx:
        existed = tx.delete_variable("region")
        existed_again = tx.delete_variable("region")
        never = tx.delete_variable("never-set")

    assert (existed, existed_again, never) == (True, False, False)
    assert store.variables() == {"keep": 1}


def test_blocks_are_set_replaced_and_deleted_by_type_and_name(store: Store) -> None:
    with store.transaction() as tx:
        tx.set_block("secret", "token", "one")
        tx.set_block("secret", "other", "x")
        tx.set_block("aws-credentials", "token", {"key": "k"})
    with store.transaction() as tx:
        tx.set_block("secret", "token", "two")

    assert store.blocks() == [
        BlockRecord("aws-credentials", "token", {"key": "k"}),
        BlockRecord("secret", "other", "x"),
        BlockRecord("secret", "token", "two"),
    ]
    with store.transaction() as tx:
        assert tx.delete_block("secret", "token") is True
        assert tx.delete_block("secret", "token") is False
        assert tx.delete_block("missing", "token") is False
    assert dict(store.observe().blocks) == {
        ("aws-credentials", "token"): {"key": "k"},
        ("secret", "other"): "x",
    }
