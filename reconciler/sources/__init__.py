"""Sources: where repository files come from (a git tree at a ref, or a working copy)."""

from reconciler.sources.base import MemorySnapshot, PathKind, Snapshot

__all__ = ["MemorySnapshot", "PathKind", "Snapshot"]
