"""Marketing flows: campaign sync and attribution."""

from prefect import flow


@flow(name="sync-campaigns")
def sync_campaigns(channels: list[str], since_hours: int = 1) -> None:
    """Pull campaign metrics from each channel."""
    print(f"syncing {channels} for the last {since_hours}h")


@flow
def attribution_report(weeks: int = 1) -> None:
    """Weekly multi-touch attribution report."""
    print(f"attribution over {weeks} week(s)")
