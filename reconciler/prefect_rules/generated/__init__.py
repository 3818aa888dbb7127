"""Validators generated from schemas/ by reconciler.prefect_rules.schema_code."""
