"""The line of a deployment in the file that owns it, for the web API and dashboard
(`owner_file_line`: `repo:prefect.yaml:12`).

The store records a deployment's owner (repository and file) and commit, not its line. The
file is read at that commit from a git directory on this machine and the deployment found by
name, as the loader reads it (positions from reconciler/prefect_rules/yamlload.py): a local
repository's own, or for a remote repository the daemon's cache of it (`git_dir` given by the
caller). Without either (a `reconcile server` that never fetched it) the line is None.
Results are cached by (git directory, commit, file, name): a commit never changes.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from reconciler.prefect_rules.yamlload import YamlLoadError, load_yaml

GIT_TIMEOUT_SECONDS = 5.0


@functools.lru_cache(maxsize=1024)
def deployment_line(
    repo: str, commit: str | None, file: str, name: str, git_dir: str | None = None
) -> int | None:
    """The line of deployment `name` in `file` at `commit`, read from `git_dir` when given,
    else from `repo` when it is a repository on this machine."""
    if git_dir is None and Path(repo, ".git").exists():
        git_dir = repo
    if not commit or git_dir is None:
        return None
    repo = git_dir
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
