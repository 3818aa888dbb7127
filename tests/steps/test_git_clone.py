"""`git_clone` (docs/design-notes.md#builtin-steps) against real repositories: served by `git
daemon` on 127.0.0.1, or read from a local path."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.core.masking import MASK
from reconciler.steps.context import StepError
from reconciler.steps.git_clone import default_directory_name, url_userinfo
from reconciler.steps.runner import StepFailed
from tests.conftest import GitRepo
from tests.steps.conftest import GitServer, Steps, git

CLONE = "prefect.deployments.steps.git_clone"


def clone_step(**arguments: str) -> str:
    body = "".join(f"\n      {key}: {value}" for key, value in arguments.items())
    return f"build:\n  - {CLONE}:\n      id: clone{body}\n"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> GitRepo:
    """main: flow.py v1 then v2; feature/x: flow.py 'feature'; two top-level directories.
    Shared by the tests of this module: none of them changes it."""
    repo = GitRepo(tmp_path_factory.mktemp("source") / "src")
    repo.path.mkdir()
    repo.git("init", "-q", "-b", "main")
    repo.commit({"flow.py": "v1\n", "a/one.txt": "a\n", "b/two.txt": "b\n"}, "first")
    repo.commit({"flow.py": "v2\n"}, "second")
    repo.git("checkout", "-q", "-b", "feature/x")
    repo.commit({"flow.py": "feature\n"}, "feature")
    repo.git("checkout", "-q", "main")
    return repo


@pytest.fixture(scope="module")
def served(git_server: GitServer, project: GitRepo) -> str:
    return git_server.publish(project.path, "project.git")


def test_clone_over_the_git_protocol_then_use_its_directory(steps: Steps, served: str) -> None:
    outputs = steps.run(
        f"""
        build:
          - {CLONE}:
              id: clone
              repository: {served}
          - prefect.deployments.steps.set_working_directory:
              directory: "{{{{ clone.directory }}}}"
          - prefect.deployments.steps.run_shell_script:
              script: cat flow.py
        """
    )
    assert outputs["clone"] == {"directory": "project"}
    assert outputs["stdout"] == "v2"
    clone = steps.cwd / "project"
    assert git("rev-parse", "--is-shallow-repository", cwd=clone) == "true"
    assert git("remote", "get-url", "origin", cwd=clone) == served


def test_a_branch_is_cloned_into_a_directory_named_after_it(steps: Steps, served: str) -> None:
    outputs = steps.run(clone_step(repository=served, branch="feature/x"))
    assert outputs["directory"] == "project-feature-x"
    assert (steps.cwd / "project-feature-x" / "flow.py").read_text() == "feature\n"


def test_a_commit_is_checked_out(steps: Steps, served: str, project: GitRepo) -> None:
    first = project.git("rev-list", "--max-parents=0", "HEAD")
    outputs = steps.run(clone_step(repository=served, commit_sha=first))
    clone = steps.cwd / outputs["directory"]
    assert (clone / "flow.py").read_text() == "v1\n"
    assert git("rev-parse", "HEAD", cwd=clone) == first


def test_directories_limit_the_checkout(steps: Steps, project: GitRepo) -> None:
    steps.run(
        clone_step(repository=str(project.path), directories="[a]", clone_directory_name="sparse")
    )
    clone = steps.cwd / "sparse"
    assert (clone / "a" / "one.txt").exists()
    assert not (clone / "b").exists()


def test_a_second_run_updates_the_existing_clone(
    steps: Steps, project: GitRepo, git_server: GitServer, tmp_path: Path
) -> None:
    served = git_server.publish(project.path, "updated/project.git")
    steps.run(clone_step(repository=served))
    editor = GitRepo(tmp_path / "editor")
    git("clone", "-q", str(git_server.base / "updated" / "project.git"), str(editor.path))
    editor.commit({"flow.py": "v3\n"}, "third")
    editor.git("push", "-q", "origin", "main")
    steps.run(clone_step(repository=served))
    assert (steps.cwd / "project" / "flow.py").read_text() == "v3\n"


def test_an_existing_clone_of_another_repository_is_not_touched(
    steps: Steps, served: str, make_repo: Callable[..., GitRepo]
) -> None:
    other = make_repo({"other.txt": "x\n"}, name="work/project")
    with pytest.raises(StepFailed, match="already holds a clone of") as caught:
        steps.run(clone_step(repository=served))
    assert "clone_directory_name" in (caught.value.hint or "")
    assert (other.path / "other.txt").exists()


def test_a_local_path_can_be_cloned(steps: Steps, project: GitRepo) -> None:
    outputs = steps.run(clone_step(repository=str(project.path), branch="main"))
    assert outputs["directory"] == "src-main"
    assert (steps.cwd / "src-main" / "flow.py").read_text() == "v2\n"
    # One line in the run's log, and none of git's own (its "--depth is ignored in local
    # clones" warning included): they are kept for the error when a clone fails.
    shown = steps.lines
    assert len(shown) == 1, steps.lines
    assert re.search(r"cloned .* at [0-9a-f]{12} into src-main$", shown[0]), shown
    assert not any("warning" in line for line in steps.lines)


def test_a_failed_clone_names_the_exit_code_and_never_prints_the_token(steps: Steps) -> None:
    token = "tok-S3CRET/value@x"
    url = "https://127.0.0.1:9/org/private.git"  # the discard port: nothing listens
    with pytest.raises(StepFailed) as caught:
        steps.run(clone_step(repository=url, access_token=f"'{token}'"))
    message = str(caught.value)
    assert "failed with exit code 128" in message
    assert "cloning 'https://127.0.0.1:9/org/private.git' failed" in message
    assert f"https://{MASK}@127.0.0.1:9/org/private.git" in steps.output  # the command shown
    for form in (token, "tok-S3CRET%2Fvalue%40x"):
        assert form not in message
        assert form not in steps.output
    assert not (steps.cwd / "private").exists()


def test_credentials_are_only_used_with_https(steps: Steps, served: str) -> None:
    steps.run(clone_step(repository=served, credentials="{username: me, password: pass-word-1}"))
    config = (steps.cwd / "project" / ".git" / "config").read_text()
    assert "pass-word-1" not in config
    assert "pass-word-1" not in steps.output


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            {"access_token": "t0ken", "credentials": "{token: t0ken}"},
            "either `access_token` or `credentials`, not both",
        ),
        ({"branch": "main", "commit_sha": "abcd"}, "either `branch` or `commit_sha`, not both"),
        ({"branch": "--upload-pack=touch"}, "cannot start with '-'"),
        ({"commit_sha": "not-a-sha"}, "'not-a-sha' is not a commit SHA"),
        ({"credentials": "{username: me}"}, "no `access_token`, `token` or `password`"),
    ],
)
def test_bad_arguments_are_refused_before_git_runs(
    steps: Steps, arguments: dict[str, str], message: str
) -> None:
    with pytest.raises(StepFailed, match=message):
        steps.run(clone_step(repository="https://example.invalid/r.git", **arguments))
    assert not any("$ git" in line for line in steps.lines)


def test_a_repository_that_looks_like_an_option_is_not_one(steps: Steps) -> None:
    with pytest.raises(StepFailed):
        steps.run(clone_step(repository="'--upload-pack=touch pwned'"))
    assert not (steps.cwd / "pwned").exists()


@pytest.mark.parametrize(
    ("repository", "credentials", "expected"),
    [
        ("https://github.com/o/r.git", {"access_token": "tok"}, "tok"),
        ("https://github.com/o/r.git", {"username": "me", "password": "p@ss"}, "me:p%40ss"),
        ("https://gitlab.com/o/r.git", {"token": "tok"}, "oauth2:tok"),
        ("https://gitlab.com/o/r.git", {"token": "deploy:tok"}, "deploy:tok"),
        ("https://bitbucket.org/o/r.git", {"token": "tok"}, "x-token-auth:tok"),
        ("https://bitbucketserver.corp/o/r.git", {"token": "me:tok"}, "me:tok"),
    ],
)
def test_credentials_follow_each_hosts_convention(
    repository: str, credentials: dict[str, str], expected: str
) -> None:
    assert url_userinfo(repository, credentials) == expected


def test_bitbucket_server_needs_a_username() -> None:
    with pytest.raises(StepError, match="needs a username"):
        url_userinfo("https://bitbucketserver.corp/o/r.git", {"token": "tok"})


@pytest.mark.parametrize(
    ("repository", "branch", "expected"),
    [
        ("https://github.com/org/repo.git", None, "repo"),
        ("https://github.com/org/repo", "release/1.x", "repo-release-1.x"),
        ("/srv/git/project.git/", None, "project"),
    ],
)
def test_default_directory_names(repository: str, branch: str | None, expected: str) -> None:
    assert default_directory_name(repository, branch) == expected


def test_the_clone_directory_is_relative_to_the_working_directory(
    steps: Steps, project: GitRepo
) -> None:
    (steps.cwd / "nested").mkdir()
    outputs = steps.run(
        f"""
        build:
          - prefect.deployments.steps.set_working_directory:
              directory: nested
          - {CLONE}:
              repository: {project.path}
              clone_directory_name: code
        """
    )
    assert outputs["directory"] == "code"
    assert (steps.cwd / "nested" / "code" / "flow.py").exists()
