"""The `backend` and `store` fixtures of the store contract, for every contract test module."""

from tests.contract.backends import backend, store

__all__ = ["backend", "store"]
