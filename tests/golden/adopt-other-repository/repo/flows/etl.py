"""Flows of the golden plan cases."""

from prefect import flow


@flow(name="ingest-orders")
def ingest(source: str = "s3://orders/raw", days: int = 1, dry_run: bool = False) -> int:
    """Copy the last `days` of orders into the warehouse."""
    return days


@flow
def build_reports(region: str, include_refunds: bool = True) -> str:
    """Rebuild the revenue reports of one region."""
    return region
