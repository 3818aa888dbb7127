"""Work pools: base job templates and job-variable validation (Prefect semantics)."""
