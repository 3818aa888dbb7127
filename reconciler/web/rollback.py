"""Which commit a rollback goes back to (web: `POST /repositories/{name}/rollback`).

A rollback names a commit that was applied before for this repository: by commit id (or a
prefix of at least 7 characters), or by the id of an applied plan (`reconcile history`). A
commit that was never applied from this repository is refused: a rollback goes back to a
state the store has been in, never to something new.
"""

from __future__ import annotations

from typing import Any

from reconciler.store.base import Store
from reconciler.web.errors import WebError

HISTORY_SEARCHED = 1000
MIN_PREFIX = 7


def _mine(source: dict[str, Any], status: dict[str, Any]) -> bool:
    return source.get("location") == status.get("source") or source.get("repo") in (
        status.get("source"),
        status.get("name"),
    )


def applied_commit(store: Store, status: dict[str, Any], target: str) -> str:
    """The full commit id `target` names among the repository's applied plans."""
    name = status["name"]
    if target.isdigit():
        record = store.applied_plan(int(target))
        if record is None:
            raise WebError(
                404, f"no applied plan {target}", "`reconcile history` lists the applied plans"
            )
        commits = [s.get("commit") for s in record.sources if _mine(s, status)]
        if not commits or not commits[0]:
            raise WebError(
                409,
                f"applied plan {target} is not of repository {name!r}",
                f"give a plan or commit that was applied from {name}",
            )
        return str(commits[0])
    lowered = target.lower()
    if len(lowered) < MIN_PREFIX or any(c not in "0123456789abcdef" for c in lowered):
        raise WebError(
            400,
            f"{target!r} is neither a commit id nor an applied plan id",
            f"give a commit (at least {MIN_PREFIX} hex digits) or a plan id from "
            "`reconcile history`",
        )
    applied = {
        str(source["commit"])
        for record in store.history(HISTORY_SEARCHED)
        for source in record.sources
        if source.get("commit") and _mine(source, status)
    }
    applied.add(str(status.get("applied_commit") or ""))
    found = sorted(c for c in applied if c and c.startswith(lowered))
    if len(found) == 1:
        return found[0]
    if found:
        raise WebError(409, f"{target!r} matches several applied commits", "give more of the id")
    raise WebError(
        409,
        f"commit {target} was never applied from repository {name!r}",
        "roll back to a commit listed by `reconcile history` (a rollback only goes back)",
    )
