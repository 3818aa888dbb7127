"""Load `automations.yaml`, our file for automations beside work-pools.yaml (stage "load +
validate"; schema: schemas/automations.schema.json):

    automations:
      - name: rerun-nightly-on-crash
        trigger:                                  # the keys of a prefect.yaml trigger
          expect: [prefect.flow-run.Crashed]
          match_related: {prefect.resource.role: deployment, prefect.resource.name: nightly}
        actions:
          - {type: run-deployment, deployment: ingest/nightly,
             parameters: {crashed_run: "{{ event.resource.id }}"}}
          - {type: send-notification, subject: "nightly crashed", body: "{{ event.resource.id }}"}

Why a file of its own, not a section of work-pools.yaml: automations reach across deployments
and pools (they are not pools), they are what an operator team owns apart from the data
team's pools, and a file per kind keeps each schema small and each file's owner clear. It is
planned, applied and pruned like work-pools.yaml: an automation leaves the store when it
leaves the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reconciler.core.diagnostics import Diagnostic
from reconciler.prefect_rules.triggers import automation_problems
from reconciler.prefect_rules.yamlload import LoadedDocument, Path
from reconciler.project.declarations import declared_twice, load_our_file, placed
from reconciler.sources.base import (
    Snapshot,
)

SCHEMA = "automations.schema.json"


@dataclass(frozen=True)
class AutomationDeclaration:
    spec: dict[str, Any]
    path: Path


@dataclass
class AutomationsFile:
    path: str
    document: LoadedDocument
    automations: list[AutomationDeclaration]


def load_automations_file(
    snapshot: Snapshot, path: str, *, display: str | None = None
) -> tuple[AutomationsFile | None, list[Diagnostic]]:
    document, diagnostics = load_our_file(snapshot, path, display, SCHEMA, "automations")
    if document is None:
        return None, diagnostics
    found: list[AutomationDeclaration] = []
    seen: dict[str, Path] = {}
    for index, raw in enumerate(document.data["automations"]):
        at: Path = ("automations", index)
        name = raw["name"]
        if twice := declared_twice(document, seen, "automation", name, at):
            diagnostics.append(twice)
            continue
        diagnostics.extend(placed(document, at, automation_problems(raw)))
        spec = {
            "name": name,
            "description": raw.get("description", ""),
            "enabled": raw.get("enabled", True),
            "trigger": raw["trigger"],
            "actions": raw["actions"],
        }
        found.append(AutomationDeclaration(spec, at))
    if any(d.is_error for d in diagnostics):
        return None, diagnostics
    return AutomationsFile(path, document, found), diagnostics
