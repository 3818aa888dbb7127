"""Nightly ETL flows for the demo data project."""

from __future__ import annotations

try:
    from prefect import flow
except ImportError:  # the demo runs without Prefect installed

    def flow(fn=None, **_kwargs):  # type: ignore[no-redef]
        return fn if fn is not None else (lambda f: f)


@flow(name="ingest-orders")
def ingest(source: str = "s3://orders/raw", days: int = 1, dry_run: bool = False) -> int:
    """Copy the last `days` of orders into the warehouse."""
    print(f"ingesting {days} day(s) of orders from {source} (dry_run={dry_run})")
    return days


@flow
def build_reports(region: str, include_refunds: bool = True) -> str:
    """Rebuild the revenue reports of one region."""
    print(f"building reports for {region} (refunds: {include_refunds})")
    return region
