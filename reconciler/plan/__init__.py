"""Plans: the pure diff between desired and observed state, and its renderers."""
