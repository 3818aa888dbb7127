"""Finance pipelines."""

from prefect import flow


@flow(name="close-books")
def close_books(entity: str, dry_run: bool = False) -> None:
    """Close the books of one legal entity for the previous month."""
    print(f"closing {entity} (dry_run={dry_run})")


@flow(name="load-fx-rates")
def load_fx_rates(start: str = "2020-01-01") -> None:
    """Load daily FX rates from `start`."""
    print(f"loading rates since {start}")
