"""The `reconcile` command line: thin wrappers that parse, call the engine or store, render."""
