"""`RemoteRepository` against real git servers on 127.0.0.1: `git daemon` (git://) and smart
HTTP behind basic auth, changed between fetches by real pushes."""

from __future__ import annotations

import base64
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reconciler.core.errors import SourceError, UserError
from reconciler.sources.remote import (
    Credentials,
    FetchResult,
    RemoteRepository,
    cache_directory_name,
)
from tests.infra.git_servers import (
    GitDaemon,
    HttpGitServer,
    Remote,
    free_port,
    git,
    running_git_daemon,
)

MakeRemote = Callable[..., Remote]
PREFECT_YAML = "deployments:\n  - name: hello\n    entrypoint: flow.py:hello\n"


@pytest.fixture
def cache_root(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def http_credentials(server: HttpGitServer) -> Credentials:
    assert server.username is not None and server.password is not None
    return Credentials(server.username, server.password)


def every_byte_in(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file())


# --- cloning --------------------------------------------------------------------------------


def test_first_fetch_clones_over_git_and_the_snapshot_reads_the_commit(
    git_daemon: GitDaemon, make_remote: MakeRemote, cache_root: Path
) -> None:
    remote = make_remote(git_daemon, {"prefect.yaml": PREFECT_YAML, "flows/flow.py": "x = 1\n"})
    repo = RemoteRepository(remote.url, "main", cache_root)

    result = repo.fetch()

    assert result == FetchResult(remote.head(), previous=None, forced=False, recloned=False)
    assert repo.cache_path.parent == cache_root
    assert git("rev-parse", "--is-bare-repository", cwd=repo.cache_path) == "true"
    snapshot = repo.snapshot(result.commit)
    assert list(snapshot.files()) == ["flows/flow.py", "prefect.yaml"]
    assert snapshot.read("prefect.yaml").decode() == PREFECT_YAML
    assert snapshot.commit == result.commit
    assert snapshot.repo_id == remote.url.removesuffix(".git") == repo.repo_id
    assert snapshot.display_root == remote.url


def test_http_with_basic_auth_leaves_no_credentials_in_the_cache(
    git_http_server: HttpGitServer, make_remote: MakeRemote, cache_root: Path
) -> None:
    remote = make_remote(git_http_server, {"prefect.yaml": PREFECT_YAML})
    credentials = http_credentials(git_http_server)
    repo = RemoteRepository(remote.url, "main", cache_root, credentials)

    result = repo.fetch()

    assert result.commit == remote.head()
    statuses = [r.status for r in git_http_server.requests if remote.name in r.path]
    assert 401 in statuses and 200 in statuses  # challenged, then let in
    assert list(repo.snapshot(result.commit).files()) == ["prefect.yaml"]
    assert repo.snapshot(result.commit).repo_id == remote.url.removesuffix(".git")
    assert git("config", "--get", "remote.origin.url", cwd=repo.cache_path) == remote.url
    stored = every_byte_in(cache_root)
    token = base64.b64encode(f"{credentials.username}:{credentials.password}".encode())
    assert credentials.password.encode() not in stored
    assert token not in stored
    assert credentials.password not in repr(credentials)
    assert credentials.password not in repr(repo.__dict__)


def test_the_users_own_credential_helpers_never_store_the_token(
    git_http_server: HttpGitServer,
    make_remote: MakeRemote,
    cache_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    stored = home / "stored-credentials"
    (home / ".gitconfig").write_text(f"[credential]\n\thelper = store --file={stored}\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    remote = make_remote(git_http_server, {"prefect.yaml": PREFECT_YAML})
    repo = RemoteRepository(remote.url, "main", cache_root, http_credentials(git_http_server))

    assert repo.fetch().commit == remote.head()
    assert not stored.exists()


def test_credentials_written_in_the_url_are_used_but_not_kept(
    git_http_server: HttpGitServer, make_remote: MakeRemote, cache_root: Path
) -> None:
    remote = make_remote(git_http_server, {"prefect.yaml": PREFECT_YAML})
    repo = RemoteRepository(git_http_server.push_url_of(remote.name), "main", cache_root)

    result = repo.fetch()

    assert result.commit == remote.head()
    assert repo.url == remote.url
    assert repo.snapshot(result.commit).repo_id == remote.url.removesuffix(".git")
    assert repo.cache_path.name == cache_directory_name(remote.url)
    assert str(git_http_server.password).encode() not in every_byte_in(cache_root)


# --- following the remote ---------------------------------------------------------------------


def test_a_new_commit_on_the_remote_is_fetched(
    git_daemon: GitDaemon, make_remote: MakeRemote, cache_root: Path
) -> None:
    remote = make_remote(git_daemon, {"prefect.yaml": PREFECT_YAML})
    repo = RemoteRepository(remote.url, "main", cache_root)
    first = repo.fetch().commit

    second = remote.commit({"flow.py": "def hello(): ...\n"}, "add the flow")
    result = repo.fetch()

    assert result == FetchResult(second, previous=first, forced=False, recloned=False)
    assert list(repo.snapshot(second).files()) == ["flow.py", "prefect.yaml"]
    assert list(repo.snapshot(first).files()) == ["prefect.yaml"]


def test_an_unchanged_remote_gives_the_same_commit_without_transferring_objects(
    git_http_server: HttpGitServer, make_remote: MakeRemote, cache_root: Path
) -> None:
    remote = make_remote(
        git_http_server, {"prefect.yaml": PREFECT_YAML, "data.bin": os.urandom(200_000)}
    )
    repo = RemoteRepository(remote.url, "main", cache_root, http_credentials(git_http_server))
    before_clone = len(git_http_server.requests)
    first = repo.fetch()
    objects_before = sorted((repo.cache_path / "objects").rglob("*"))
    requests_before = len(git_http_server.requests)

    again = repo.fetch()

    assert again == FetchResult(first.commit, previous=first.commit, forced=False, recloned=False)
    assert git_http_server.bytes_sent(since=before_clone) > 200_000  # the clone carried the blob
    assert git_http_server.bytes_sent(since=requests_before) < 2_000  # refs only
    assert sorted((repo.cache_path / "objects").rglob("*")) == objects_before


def test_a_force_push_is_taken_and_reported(
    git_daemon: GitDaemon, make_remote: MakeRemote, cache_root: Path
) -> None:
    remote = make_remote(git_daemon, {"prefect.yaml": PREFECT_YAML})
    remote.commit({"old.py": "old\n"}, "to be rewritten")
    repo = RemoteRepository(remote.url, "main", cache_root)
    before = repo.fetch().commit

    rewritten = remote.force_push({"new.py": "new\n"})
    result = repo.fetch()

    assert result == FetchResult(rewritten, previous=before, forced=True, recloned=False)
    assert list(repo.snapshot(rewritten).files()) == ["new.py", "prefect.yaml"]
    assert repo.fetch().forced is False  # the next fetch is an ordinary one again


def test_a_deleted_branch_is_an_error_and_the_cache_keeps_the_last_commit(
    git_daemon: GitDaemon, make_remote: MakeRemote, cache_root: Path
) -> None:
    remote = make_remote(git_daemon, {"prefect.yaml": PREFECT_YAML})
    remote.commit({"other.txt": "x\n"}, branch="other")
    repo = RemoteRepository(remote.url, "main", cache_root)
    last = repo.fetch().commit

    remote.delete_branch()
    with pytest.raises(SourceError) as caught:
        repo.fetch()

    assert caught.value.message == f"branch 'main' no longer exists on {remote.url}"
    assert last[:12] in (caught.value.hint or "")
    assert "branches there: other" in (caught.value.hint or "")
    assert git("rev-parse", "refs/heads/main", cwd=repo.cache_path) == last
    assert list(repo.snapshot(last).files()) == ["prefect.yaml"]


def test_a_branch_that_does_not_exist_is_an_error_naming_the_branches_there(
    git_daemon: GitDaemon, make_remote: MakeRemote, cache_root: Path
) -> None:
    remote = make_remote(git_daemon, {"prefect.yaml": PREFECT_YAML})
    repo = RemoteRepository(remote.url, "production", cache_root)

    with pytest.raises(SourceError) as caught:
        repo.fetch()

    assert caught.value.message == f"branch 'production' does not exist on {remote.url}"
    assert caught.value.hint == "branches there: main"
    assert not os.path.lexists(repo.cache_path)
    assert [p.name for p in cache_root.iterdir()] == [f"{repo.cache_path.name}.lock"]


# --- failures -----------------------------------------------------------------------------------


def test_a_wrong_password_is_refused_and_never_shown(
    git_http_server: HttpGitServer, make_remote: MakeRemote, cache_root: Path
) -> None:
    remote = make_remote(git_http_server, {"prefect.yaml": PREFECT_YAML})
    wrong = Credentials(git_http_server.username, "Wr0ng-t0ken-value")
    repo = RemoteRepository(remote.url, "main", cache_root, wrong)

    with pytest.raises(SourceError) as caught:
        repo.fetch()

    error = caught.value
    assert error.message == f"authentication to {remote.url} failed: the credentials were refused"
    assert "check the username and the token" in (error.hint or "")
    shown = f"{error} {error.hint} {error!r} {error.__cause__!r} {error.__context__!r}"
    assert "Wr0ng-t0ken-value" not in shown
    assert b"Wr0ng-t0ken-value" not in every_byte_in(cache_root)
    assert not os.path.lexists(repo.cache_path)


def test_a_remote_that_asks_for_credentials_none_were_given(
    git_http_server: HttpGitServer, make_remote: MakeRemote, cache_root: Path
) -> None:
    remote = make_remote(git_http_server, {"prefect.yaml": PREFECT_YAML})

    with pytest.raises(SourceError) as caught:
        RemoteRepository(remote.url, "main", cache_root).fetch()

    assert caught.value.message == f"{remote.url} asks for credentials"
    assert "username and a password or token" in (caught.value.hint or "")


@pytest.mark.parametrize("scheme", ["git", "http"])
def test_an_unreachable_remote_is_an_error_with_a_hint(scheme: str, cache_root: Path) -> None:
    url = f"{scheme}://127.0.0.1:{free_port()}/nobody.git"  # nothing listens there

    with pytest.raises(SourceError) as caught:
        RemoteRepository(url, "main", cache_root).fetch()

    assert caught.value.message == f"cannot reach {url}: connection refused"
    assert "reachable from this machine" in (caught.value.hint or "")


def test_an_unreachable_remote_leaves_the_cache_as_it_was(
    make_remote: MakeRemote, cache_root: Path, tmp_path: Path
) -> None:
    base = tmp_path / "served"
    base.mkdir()
    with running_git_daemon(base) as daemon:
        remote = make_remote(daemon, {"prefect.yaml": PREFECT_YAML})
        repo = RemoteRepository(remote.url, "main", cache_root)
        last = repo.fetch().commit
    with pytest.raises(SourceError, match="connection refused"):
        repo.fetch()
    assert list(repo.snapshot(last).files()) == ["prefect.yaml"]


@pytest.mark.parametrize("server", ["git_daemon", "git_http_server"])
def test_a_url_that_is_not_a_repository_is_an_error(
    server: str, request: pytest.FixtureRequest, cache_root: Path
) -> None:
    served: GitDaemon | HttpGitServer = request.getfixturevalue(server)
    url = served.url_of("no-such-repository.git")
    credentials = http_credentials(served) if isinstance(served, HttpGitServer) else None

    with pytest.raises(SourceError) as caught:
        RemoteRepository(url, "main", cache_root, credentials).fetch()

    assert caught.value.message.startswith(f"{url} is not a git repository: ")
    assert "what `git clone` takes" in (caught.value.hint or "")


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP port on 127.0.0.1 that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"git://127.0.0.1:{listener.getsockname()[1]}/hangs.git"


def test_a_remote_that_never_answers_times_out(silent_server: str, cache_root: Path) -> None:
    repo = RemoteRepository(silent_server, "main", cache_root, timeout=1.0)

    started = time.monotonic()
    with pytest.raises(SourceError) as caught:
        repo.fetch()

    assert time.monotonic() - started < 10
    assert caught.value.message == f"fetching {silent_server} timed out after 1 s"
    assert "the next fetch tries again" in (caught.value.hint or "")


# --- the cache ------------------------------------------------------------------------------


def _delete_objects(cache: Path) -> None:
    shutil.rmtree(cache / "objects")


def _empty_objects(cache: Path) -> None:
    for path in (cache / "objects").rglob("*"):
        if path.is_file():
            path.unlink()


def _garbage_head(cache: Path) -> None:
    (cache / "HEAD").write_text("garbage\n")


def _not_a_repository(cache: Path) -> None:
    shutil.rmtree(cache)
    cache.mkdir()
    (cache / "notes.txt").write_text("not git\n")


def _a_file(cache: Path) -> None:
    shutil.rmtree(cache)
    cache.write_text("not a directory\n")


@pytest.mark.parametrize(
    "damage", [_delete_objects, _empty_objects, _garbage_head, _not_a_repository, _a_file]
)
def test_a_damaged_cache_is_cloned_again(
    damage: Callable[[Path], None],
    git_daemon: GitDaemon,
    make_remote: MakeRemote,
    cache_root: Path,
) -> None:
    remote = make_remote(git_daemon, {"prefect.yaml": PREFECT_YAML})
    repo = RemoteRepository(remote.url, "main", cache_root)
    repo.fetch()
    newer = remote.commit({"flow.py": "x\n"})
    damage(repo.cache_path)

    result = repo.fetch()

    assert result.commit == newer
    assert result.recloned is True
    assert result.forced is False
    assert list(repo.snapshot(newer).files()) == ["flow.py", "prefect.yaml"]
    assert sorted(p.name for p in cache_root.iterdir()) == sorted(
        [repo.cache_path.name, f"{repo.cache_path.name}.lock"]
    )
    assert repo.fetch().recloned is False


def test_a_lock_left_by_a_killed_fetch_does_not_block_the_next(
    git_daemon: GitDaemon, make_remote: MakeRemote, cache_root: Path
) -> None:
    remote = make_remote(git_daemon, {"prefect.yaml": PREFECT_YAML})
    repo = RemoteRepository(remote.url, "main", cache_root)
    repo.fetch()
    (repo.cache_path / "refs" / "heads" / "main.lock").write_text("")
    newer = remote.commit({"flow.py": "x\n"})

    result = repo.fetch()

    assert (result.commit, result.recloned) == (newer, False)


def test_leftovers_of_a_crashed_clone_are_removed(
    git_daemon: GitDaemon, make_remote: MakeRemote, cache_root: Path
) -> None:
    remote = make_remote(git_daemon, {"prefect.yaml": PREFECT_YAML})
    repo = RemoteRepository(remote.url, "main", cache_root)
    half = cache_root / f"{repo.cache_path.name}.tmp-crashed"
    half.mkdir(parents=True)
    (half / "HEAD").write_text("ref: refs/heads/main\n")

    assert repo.fetch().recloned is False
    assert not half.exists()


def test_two_fetches_at_once_make_one_cache(
    git_daemon: GitDaemon, make_remote: MakeRemote, cache_root: Path
) -> None:
    remote = make_remote(git_daemon, {"prefect.yaml": PREFECT_YAML})
    results: list[FetchResult] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(RemoteRepository(remote.url, "main", cache_root).fetch())
        )
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(r.previous or "" for r in results) == ["", remote.head()]
    assert {r.commit for r in results} == {remote.head()}
    assert len([p for p in cache_root.iterdir() if p.is_dir()]) == 1


def test_the_cache_directory_is_named_after_the_url_without_credentials() -> None:
    name = cache_directory_name("https://example.com:8443/org/flows.git")
    assert name.startswith("example.com_8443_org_flows-")
    assert cache_directory_name("https://bob:s3cret@example.com:8443/org/flows.git") == name
    assert cache_directory_name("https://example.com/org/flows.git") != name
    assert "s3cret" not in name


# --- arguments --------------------------------------------------------------------------------


def test_credentials_come_from_named_variables_or_a_file(tmp_path: Path) -> None:
    environ = {"GIT_USER": "bob", "GIT_TOKEN": "t0ken"}
    from_env = Credentials.from_environment("GIT_USER", "GIT_TOKEN", None, environ)
    assert from_env == Credentials("bob", "t0ken")
    secret = tmp_path / "token"
    secret.write_text("file-t0ken\n")
    assert Credentials.from_environment(None, None, str(secret), environ) == Credentials(
        None, "file-t0ken"
    )
    assert Credentials.from_environment(None, None, None, environ) is None
    assert "t0ken" not in repr(from_env) and "t0ken" not in str(from_env)


@pytest.mark.parametrize(
    ("arguments", "message", "hint"),
    [
        (("GIT_USER", "MISSING", None), "MISSING is not set", "export MISSING"),
        (("MISSING", "GIT_TOKEN", None), "MISSING is not set", "export MISSING"),
        ((None, "EMPTY", None), "EMPTY is empty", None),
        ((None, None, "/nonexistent/token"), "/nonexistent/token does not exist", "check the"),
        ((None, "GIT_TOKEN", "/some/file"), "not both", "keep one"),
        (("GIT_USER", None, None), "no password or token", "name the environment variable"),
    ],
)
def test_credentials_that_cannot_be_read_are_errors(
    arguments: tuple[str | None, str | None, str | None], message: str, hint: str | None
) -> None:
    environ = {"GIT_USER": "bob", "GIT_TOKEN": "t0ken", "EMPTY": ""}
    with pytest.raises(UserError, match=message) as caught:
        Credentials.from_environment(*arguments, environ)
    if hint is not None:
        assert hint in (caught.value.hint or "")


@pytest.mark.parametrize(
    ("url", "branch", "message"),
    [
        ("git://127.0.0.1/x.git", "bad..name", "'bad..name' is not a valid branch name"),
        ("git://127.0.0.1/x.git", "--upload-pack=sh", "is not a branch name"),
        ("--upload-pack=sh", "main", "is not a git URL"),
        ("ssh://git:pw@127.0.0.1/x.git", "main", "passwords are only used with http"),
    ],
)
def test_bad_arguments_are_refused_before_git_runs(
    url: str, branch: str, message: str, cache_root: Path
) -> None:
    with pytest.raises(UserError, match=message):
        RemoteRepository(url, branch, cache_root)
    assert not cache_root.exists()


def test_ssh_urls_keep_their_user_name() -> None:
    repo = RemoteRepository("ssh://git@example.com/org/flows.git", "main", Path("/unused"))
    assert repo.url == "ssh://git@example.com/org/flows.git"
    assert repo.repo_id == "ssh://example.com/org/flows"
