"""Writing the imported files: all of them or none. Existing files are refused unless
`force`; a file is written to a temporary name beside it and renamed, so an interrupted import
leaves no half-written file."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from reconciler.core.errors import UserError


def write_files(out: Path, files: Mapping[str, str], *, force: bool) -> list[Path]:
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is not a directory", "name a directory (it may not exist)")
    targets = {out / name: text for name, text in files.items()}
    existing = [p for p in targets if p.exists()]
    if existing and not force:
        names = ", ".join(str(p) for p in existing)
        raise UserError(
            f"{names} already exist{'s' if len(existing) == 1 else ''}; nothing was written",
            "choose another --out directory, or pass --force to overwrite",
        )
    for path, text in targets.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch = path.with_name(f".{path.name}.import-tmp")
        scratch.write_text(text, encoding="utf-8")
        os.replace(scratch, path)
    return list(targets)
