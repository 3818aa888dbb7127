"""The line of a deployment in its owning file, read from a git repository at a commit."""

from __future__ import annotations

from collections.abc import Callable

from reconciler.web.owner_lines import deployment_line
from tests.conftest import GitRepo

PREFECT = """\
name: project
deployments:
  - name: first
    entrypoint: flows.py:a
  # a comment
  - name: second
    entrypoint: flows.py:b
"""


def test_lines_at_the_recorded_commit(make_repo: Callable[..., GitRepo]) -> None:
    repo = make_repo({"prefect.yaml": PREFECT})
    old = repo.git("rev-parse", "HEAD")
    new = repo.commit({"prefect.yaml": "# moved\n" + PREFECT})
    where = str(repo.path)
    assert deployment_line(where, old, "prefect.yaml", "first") == 3
    assert deployment_line(where, old, "prefect.yaml", "second") == 6
    assert deployment_line(where, new, "prefect.yaml", "second") == 7, "as of that commit"
    assert deployment_line(where, old, "prefect.yaml", "third") is None
    assert deployment_line(where, old, "missing.yaml", "first") is None
    assert deployment_line(where, "0" * 40, "prefect.yaml", "first") is None
    assert deployment_line("https://git.example/r.git", old, "prefect.yaml", "first") is None
    assert deployment_line(where, None, "prefect.yaml", "first") is None
