"""Validators generated from schemas/ by reconciler.spec.schema_code."""
