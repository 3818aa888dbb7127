"""Prefect's rules, written once: YAML loading with positions, the placeholder grammar,
schema validation, schedules, parameter types and base job templates. Used by the project
files, the pools and the worker."""
