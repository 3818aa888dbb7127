"""The store: where reconciled objects, variables, secrets and plan history live.

`open_store(url)` picks a backend from the URL. Backends implement `Store` (store/base.py);
the contract tests in tests/contract run against each.
"""

from reconciler.store.base import (
    AppliedPlanRecord,
    BlockRecord,
    ObservedState,
    RepositoryRecord,
    RepoStatusRecord,
    Store,
    WriteTransaction,
)
from reconciler.store.url import DEFAULT_STORE_PATH, open_store

__all__ = [
    "DEFAULT_STORE_PATH",
    "AppliedPlanRecord",
    "BlockRecord",
    "ObservedState",
    "RepoStatusRecord",
    "RepositoryRecord",
    "Store",
    "WriteTransaction",
    "open_store",
]
