"""A Prefect-compatible API served from our store: what Prefect's flow engine talks to while
a run executes (see app.py)."""

from reconciler.prefect_api.app import create_prefect_api

__all__ = ["create_prefect_api"]
