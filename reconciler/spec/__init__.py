"""Pure specification stages: load YAML with positions, validate, template, read flows."""
