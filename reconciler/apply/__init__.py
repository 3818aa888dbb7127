"""Apply: the one stage that writes a plan to the store, in one transaction."""
