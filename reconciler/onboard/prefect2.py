"""Prefect 2 deployment.yaml files to Prefect 3 prefect.yaml and work-pools.yaml."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.core.errors import UserError
from reconciler.onboard.secrets import Needed


@dataclass
class Prefect2Result:
    prefect_yaml: str
    pools_yaml: str | None
    deployments: list[str]
    needed: list[Needed] = field(default_factory=list)
    untranslated: list[str] = field(default_factory=list)


def translate_files(files: Sequence[Path], blocks: Sequence[Path]) -> Prefect2Result:
    raise UserError("--from-prefect2 is not available yet")
