"""The store: where reconciled objects, variables, secrets and plan history live.

`open_store(url)` picks a backend from the URL. Both backends are one SQL implementation
(store/sql_store.py) over SQLite or PostgreSQL; they implement `Store` (store/base.py), the
union of one protocol per concern (`ResourceStore`, `ValueStore`, `LeaseStore`,
`RunStore`). The contract tests in tests/contract run against each.
"""

from reconciler.model.observed import (
    AppliedPlanRecord,
    BlockRecord,
    ObservedState,
    RepositoryRecord,
    RepoStatusRecord,
)
from reconciler.store.base import (
    LeaseStore,
    ResourceStore,
    RunStore,
    Store,
    ValueStore,
    WriteTransaction,
)
from reconciler.store.url import DEFAULT_STORE_PATH, open_store

__all__ = [
    "DEFAULT_STORE_PATH",
    "AppliedPlanRecord",
    "BlockRecord",
    "LeaseStore",
    "ObservedState",
    "RepoStatusRecord",
    "RepositoryRecord",
    "ResourceStore",
    "RunStore",
    "Store",
    "ValueStore",
    "WriteTransaction",
    "open_store",
]
