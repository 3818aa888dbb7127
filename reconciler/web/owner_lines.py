"""The line of a deployment in the file that owns it, for the web API and dashboard
(`owner_file_line`: `repo:prefect.yaml:12`).

The store records a deployment's owner (repository and file) and commit, not its line. When the
repository is a git repository on this machine (a daemon's local repository), the file is
read at that commit and the deployment found by name, as the loader reads it (positions from
reconciler/prefect_rules/yamlload.py). Otherwise (a remote repository) the line is unknown: None.
Results are cached by (repository, commit, file, name): a commit never changes.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from reconciler.prefect_rules.yamlload import YamlLoadError, load_yaml

GIT_TIMEOUT_SECONDS = 5.0


@functools.lru_cache(maxsize=1024)
def deployment_line(repo: str, commit: str | None, file: str, name: str) -> int | None:
    if not commit or not Path(repo, ".git").exists():
        return None
    try:
        shown = subprocess.run(
            ["git", "-C", repo, "show", f"{commit}:{file}"],
            capture_output=True,
            timeout=GIT_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if shown.returncode != 0:
        return None
    try:
        document = load_yaml(shown.stdout, file)
    except YamlLoadError:
        return None
    data = document.data
    deployments = data.get("deployments") if isinstance(data, dict) else None
    if not isinstance(deployments, list):
        return None
    for index, item in enumerate(deployments):
        if isinstance(item, dict) and item.get("name") == name:
            return document.location(("deployments", index)).line
    return None
