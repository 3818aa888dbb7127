"""Worker mode: claim runs of the reconciled pools and execute their flows."""
