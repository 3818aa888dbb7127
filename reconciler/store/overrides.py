"""Operator overrides of git-owned deployments, as the store keeps them (store: one table,
`deployment_overrides`, migration 9).

Written once for both store backends, through the SQL store's own hooks (`_write()` and
`_read()` of store/sql_store.py), so that no backend class changes.
A store without the table (another kind of store) has no overrides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reconciler.store.run_rows import now_iso
from reconciler.store.sql_store import SqlStoreBase


@dataclass(frozen=True)
class Override:
    deployment: str
    paused: bool
    was_paused: bool
    """What the deployment's `paused` was when the override was set (restored on removal)."""
    actor: str
    at: str

    def to_json(self) -> dict[str, Any]:
        return {
            "deployment": self.deployment,
            "paused": self.paused,
            "was_paused": self.was_paused,
            "actor": self.actor,
            "at": self.at,
        }


def _hooks(store: object) -> SqlStoreBase | None:
    """The SQL store under `store`, when it is one (a store of another kind keeps none)."""
    return store if isinstance(store, SqlStoreBase) else None


def overrides(store: object) -> list[Override]:
    """Every override, by deployment key."""
    hooks = _hooks(store)
    if hooks is None:
        return []
    rows = hooks._read(
        "SELECT deployment, paused, was_paused, actor, at FROM deployment_overrides "
        "ORDER BY deployment"
    )
    return [Override(r[0], bool(r[1]), bool(r[2]), r[3], r[4]) for r in rows]


def put_override(
    store: object, deployment: str, paused: bool, was_paused: bool, actor: str
) -> bool:
    """Record an override; False when one is there already (nothing written)."""
    hooks = _hooks(store)
    assert hooks is not None, "this store keeps no overrides"
    with hooks._write() as conn:
        cursor = conn.execute(
            "INSERT INTO deployment_overrides (deployment, paused, was_paused, actor, at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (deployment) DO NOTHING",
            (deployment, paused, was_paused, actor, now_iso()),
        )
        return bool(cursor.rowcount)


def remove_override(store: object, deployment: str) -> bool:
    hooks = _hooks(store)
    assert hooks is not None, "this store keeps no overrides"
    with hooks._write() as conn:
        cursor = conn.execute(
            "DELETE FROM deployment_overrides WHERE deployment = ?", (deployment,)
        )
        return bool(cursor.rowcount)
