"""Onboarding (issue 19): import what a store already holds into prefect.yaml and
work-pools.yaml, and translate Prefect 2 deployment files."""
