"""The bottom layer: errors, diagnostics with positions, masking of secrets, safe terminal
text, process-pool helpers. Imports nothing else of reconciler."""
