"""Remote git repositories for the daemon: a local bare cache of one branch of one URL.

`RemoteRepository.fetch()` clones the remote once into `cache_root` (into a temporary
directory, renamed into place, so a crash mid-clone never leaves half a cache) and afterwards
fetches the one branch with a forced refspec, so force-pushes are taken and reported. The
daemon then plans `snapshot(commit)`, which reads the cache with `reconciler.sources.git`.

Credentials are handed to git per command through a credential helper that reads environment
variables, scoped to the remote's scheme, host and port: they are never written to the
cache's config, never part of a URL, and masked in every message. The cache's `origin` is
the URL without credentials, which is what snapshots record as their owner (`repo_id`).

Failures are `SourceError`s with a hint: unreachable remote, refused credentials, a branch
that does not exist (the cache keeps the last fetched commit), a URL that is not a git
repository, a timeout. A cache that git can no longer read is cloned again.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import git

from reconciler.core.errors import SourceError, UserError
from reconciler.core.masking import Masker
from reconciler.core.url_credentials import scrub_urls, strip_credentials, without_user_info
from reconciler.sources.git import GitSnapshot, open_repository

# Sent when no username is given: GitHub and Gitea take any name with a token, GitLab too
# with a personal access token; servers that need a real name are given one.
DEFAULT_USERNAME = "x-access-token"
DEFAULT_TIMEOUT_S = 300.0
# curl gives up on a transfer slower than LOW_SPEED_LIMIT bytes/s for LOW_SPEED_TIME seconds.
LOW_SPEED_LIMIT = 1000
LOW_SPEED_TIME_S = 60
_USERNAME_VARIABLE = "RECONCILER_GIT_USERNAME"
_PASSWORD_VARIABLE = "RECONCILER_GIT_PASSWORD"
# Answers git's `get` with the two variables above and ignores `store` and `erase`.
_CREDENTIAL_HELPER = (
    '!f() { test "$1" = get || return 0; '
    f'printf \'username=%s\\npassword=%s\\n\' "${_USERNAME_VARIABLE}" "${_PASSWORD_VARIABLE}"; '
    "}; f"
)


@dataclass(frozen=True)
class Credentials:
    """A username and a password or token for an http(s) remote. `repr` hides the password."""

    username: str | None
    password: str = field(repr=False)

    def __post_init__(self) -> None:
        for value in (self.username or "", self.password):
            if "\n" in value or "\0" in value:
                raise UserError("git credentials cannot contain a newline or a NUL character")

    @classmethod
    def from_environment(
        cls,
        username_env: str | None,
        password_env: str | None,
        password_file: str | None,
        environ: Mapping[str, str],
    ) -> Credentials | None:
        """Credentials named by configuration: the password (or token) from the variable
        `password_env` or the file `password_file`, the username from `username_env`. None
        when nothing is named."""
        if password_env is not None and password_file is not None:
            raise UserError(
                "a git password is read from an environment variable or from a file, not both",
                "keep one of them",
            )
        if password_env is None and password_file is None:
            if username_env is not None:
                raise UserError(
                    f"a git username is named ({username_env}) but no password or token",
                    "name the environment variable or the file that holds the token",
                )
            return None
        username = None
        if username_env is not None:
            username = _variable(environ, username_env, "the git username")
        if password_env is not None:
            password = _variable(environ, password_env, "the git password or token")
        else:
            assert password_file is not None
            password = _password_file(password_file)
        return cls(username, password)


def _variable(environ: Mapping[str, str], name: str, what: str) -> str:
    value = environ.get(name)
    if value is None:
        raise UserError(
            f"the environment variable {name} is not set; it should hold {what}",
            f"export {name} in the daemon's environment",
        )
    if value == "":
        raise UserError(f"the environment variable {name} is empty; it should hold {what}")
    return value


def _password_file(path: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(
            f"the git password file {path} does not exist",
            "check the path, or mount the secret there",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read the git password file {path}: {exc}") from None
    password = text.rstrip("\r\n")
    if not password:
        raise UserError(f"the git password file {path} is empty")
    return password


@dataclass(frozen=True)
class FetchResult:
    commit: str  # the branch head after the fetch
    previous: str | None  # the head the cache held before (None on a first clone)
    forced: bool  # `previous` is not an ancestor of `commit`: a force-push or rewrite
    recloned: bool  # the cache was unreadable and was cloned again


class _GitFailed(Exception):
    def __init__(self, status: int, stderr: str, timed_out: bool) -> None:
        super().__init__(stderr)
        self.status = status
        self.stderr = stderr
        self.timed_out = timed_out


class RemoteRepository:
    """One branch of one remote repository, cached under `cache_root`."""

    def __init__(
        self,
        url: str,
        branch: str,
        cache_root: Path,
        credentials: Credentials | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        url = url.strip()
        if not url or url.startswith("-"):
            raise UserError(f"{url!r} is not a git URL")
        if not _is_http(url) and "://" in url and urlsplit(url).password is not None:
            raise UserError(
                f"the URL {strip_credentials(url)} holds a password, but passwords are only "
                "used with http(s) URLs",
                "use an https:// URL with credentials, or drop the password (ssh uses keys)",
            )
        self.url = _fetch_url(url)
        self.shown_url = strip_credentials(url)  # what errors and plans show
        self.branch = branch
        self.cache_root = cache_root
        self.credentials = _with_url_username(credentials or _credentials_in(url), url)
        self.timeout = timeout
        if self.credentials is not None and not _is_http(self.url):
            raise UserError(
                f"credentials are given for {self.shown_url}, but they are only used with "
                "http(s) URLs",
                "use an https:// URL, or drop the credentials (ssh uses its own keys)",
            )
        self._masker = Masker(_secret_forms(self.credentials) if self.credentials else ())
        _check_branch_name(branch)

    @property
    def repo_id(self) -> str:
        """The owner recorded on objects planned from this remote (as its snapshots say)."""
        return self.shown_url.removesuffix(".git")

    @property
    def cache_path(self) -> Path:
        return self.cache_root / cache_directory_name(self.url)

    def fetch(self) -> FetchResult:
        """Bring the cache up to date with the remote branch; the first call clones."""
        self.cache_root.mkdir(parents=True, exist_ok=True)
        with self._locked():
            self._remove_leftovers()
            usable, previous = self._inspect_cache()
            if not usable:
                exists = os.path.lexists(self.cache_path)
                return self._reclone(previous, recloned=exists)
            self._remove_stale_files()
            try:
                self._fetch_into(self.cache_path)
            except _GitFailed as failure:
                problem = self._classify(failure, previous, self.cache_path)
                raise problem or self._unexpected(failure) from None
            commit = self._head()
            assert commit is not None, "a successful fetch leaves the branch in the cache"
            forced = previous is not None and not self._is_ancestor(previous, commit)
            return FetchResult(commit, previous, forced, recloned=False)

    def fetch_ref(self, ref: str) -> str:
        """The commit `ref` (a branch, tag, `refs/...` name or commit id) names on the remote,
        fetched into the cache under `refs/reconciler/plan/` (for plans of pull requests);
        the watched branch is not moved. Raises SourceError when the remote has no such ref."""
        usable, _ = self._inspect_cache()
        if not usable:
            self.fetch()
        with self._locked():
            known = self._git_local(
                self.cache_path, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"
            )
            if known and re.fullmatch(r"[0-9a-f]{7,64}", ref):
                return known.strip()  # a commit id the cache holds already
            # One local ref per planned ref, named by its hash: `a` and `a/b` can both be
            # planned (as refs, one would be the other's directory).
            local = f"refs/reconciler/plan/{hashlib.sha256(ref.encode()).hexdigest()[:24]}"
            try:
                self._run(
                    self.cache_path,
                    "fetch",
                    "--quiet",
                    "--no-tags",
                    "--no-write-fetch-head",
                    "--no-auto-gc",
                    "origin",
                    f"+{ref}:{local}",
                    remote=True,
                )
            except _GitFailed as failure:
                first = (failure.stderr.strip().splitlines() or ["git fetch failed"])[0]
                raise SourceError(
                    f"cannot fetch {ref!r} from {self.shown_url}: {first}",
                    "push the branch first, or give a branch, tag, refs/pull/N/head or commit "
                    "id the remote has",
                ) from None
            commit = self._git_local(
                self.cache_path, "rev-parse", "--verify", "--quiet", f"{local}^{{commit}}"
            )
        if not commit:
            raise SourceError(f"{ref!r} of {self.shown_url} is not a commit", "give a commit")
        return commit.strip()

    def snapshot(self, commit: str) -> GitSnapshot:
        """The tree of `commit` from the cache, as the planner reads repositories."""
        snapshot = open_repository(str(self.cache_path), ref=commit, display_root=self.shown_url)
        assert isinstance(snapshot, GitSnapshot)
        return snapshot

    # --- the cache ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One fetch of a cache at a time, across threads and processes."""
        with open(self.cache_root / f"{self.cache_path.name}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _remove_leftovers(self) -> None:
        """Temporary clones and replaced caches of a run that crashed."""
        name = self.cache_path.name
        for pattern in (f"{name}.tmp-*", f"{name}.old-*"):
            for leftover in self.cache_root.glob(pattern):
                shutil.rmtree(leftover, ignore_errors=True)

    def _inspect_cache(self) -> tuple[bool, str | None]:
        """Whether git can use the cache, and the branch head it holds (read from the ref
        files when git cannot read the cache)."""
        path = self.cache_path
        if not path.is_dir() or path.is_symlink():
            return False, None
        probe = self._git_local(path, "rev-parse", "--is-bare-repository")
        origin = self._git_local(path, "config", "--get", "remote.origin.url")
        if probe is None or probe.strip() != "true" or (origin or "").strip() != self.url:
            return False, _ref_from_files(path, self.branch)
        head = self._head()
        if head is None and _ref_from_files(path, self.branch) is not None:
            return False, _ref_from_files(path, self.branch)  # the ref names a missing commit
        return True, head

    def _head(self, path: Path | None = None) -> str | None:
        ref = f"refs/heads/{self.branch}^{{commit}}"
        out = self._git_local(path or self.cache_path, "rev-parse", "--verify", "--quiet", ref)
        return out.strip() if out else None

    def _is_ancestor(self, older: str, newer: str) -> bool:
        return (
            self._git_local(self.cache_path, "merge-base", "--is-ancestor", older, newer)
            is not None
        )

    def _remove_stale_files(self) -> None:
        """Lock files and partial packs of a git killed mid-fetch (by the timeout), which
        would make every later fetch fail. Only this class runs git in the cache, under
        `_locked`, so none of them belongs to a running git."""
        path = self.cache_path
        stale = [*path.glob("*.lock"), *path.glob("objects/pack/tmp_*")]
        stale += (path / "refs").rglob("*.lock")
        for file in stale:
            with contextlib.suppress(OSError):
                file.unlink()

    def _reclone(self, previous: str | None, *, recloned: bool) -> FetchResult:
        """Clone into a temporary directory next to the cache, then swap it in. A failed
        clone leaves the old cache as it was."""
        temporary = Path(
            tempfile.mkdtemp(prefix=f"{self.cache_path.name}.tmp-", dir=self.cache_root)
        )
        try:
            self._run(temporary, "init", "--quiet", "--bare", "--template=", str(temporary))
            self._run(temporary, "config", "remote.origin.url", self.url)
            self._run(temporary, "symbolic-ref", "HEAD", f"refs/heads/{self.branch}")
            try:
                self._fetch_into(temporary)
            except _GitFailed as failure:
                raise self._classify(failure, previous, temporary) or self._unexpected(
                    failure
                ) from None
            commit = self._head(temporary)
            assert commit is not None, "a successful fetch leaves the branch in the clone"
            self._replace_cache(temporary)
        finally:
            shutil.rmtree(temporary, ignore_errors=True)
        forced = previous is not None and not self._is_ancestor(previous, commit)
        return FetchResult(commit, previous, forced, recloned)

    def _replace_cache(self, clone: Path) -> None:
        old = None
        if os.path.lexists(self.cache_path):
            old = self.cache_root / f"{self.cache_path.name}.old-{os.getpid()}-{time.time_ns()}"
            os.rename(self.cache_path, old)
        os.rename(clone, self.cache_path)
        if old is not None:
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink()

    # --- running git ----------------------------------------------------------------------

    def _fetch_into(self, path: Path) -> None:
        refspec = f"+refs/heads/{self.branch}:refs/heads/{self.branch}"
        self._run(
            path,
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-write-fetch-head",
            "--no-auto-gc",
            "origin",
            refspec,
            remote=True,
        )

    def _run(self, path: Path, *args: str, remote: bool = False) -> str:
        """`git --git-dir=path ARGS`; raises _GitFailed. Only commands that talk to the
        remote (`remote=True`) get the credentials."""
        env = self._environment(remote)
        started = time.monotonic()
        status, stdout, stderr = git.Git().execute(
            ["git", f"--git-dir={path}", *args],
            env=env,
            kill_after_timeout=self.timeout,
            with_extended_output=True,
            with_exceptions=False,
            start_new_session=True,  # no controlling terminal: nothing can prompt
        )
        if status != 0:
            timed_out = time.monotonic() - started >= self.timeout
            raise _GitFailed(status, self._masker(scrub_urls(str(stderr))), timed_out)
        return str(stdout)

    def _git_local(self, path: Path, *args: str) -> str | None:
        """A local command in the cache: its output, or None when it fails."""
        try:
            return self._run(path, *args)
        except _GitFailed:
            return None

    def _environment(self, remote: bool) -> dict[str, str]:
        env = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "", "SSH_ASKPASS": ""}
        config = [("protocol.ext.allow", "never")]
        if remote:
            config += [
                ("http.lowSpeedLimit", str(LOW_SPEED_LIMIT)),
                ("http.lowSpeedTime", str(LOW_SPEED_TIME_S)),
            ]
        if remote and self.credentials is not None:
            parts = urlsplit(self.url)
            scope = f"{parts.scheme}://{parts.netloc}"
            # An empty helper first: the user's helpers neither answer for nor store ours.
            config += [
                ("credential.helper", ""),
                (f"credential.{scope}.helper", _CREDENTIAL_HELPER),
            ]
            env[_USERNAME_VARIABLE] = self.credentials.username or DEFAULT_USERNAME
            env[_PASSWORD_VARIABLE] = self.credentials.password
        start = _config_count(os.environ)
        for index, (key, value) in enumerate(config, start):
            env[f"GIT_CONFIG_KEY_{index}"] = key
            env[f"GIT_CONFIG_VALUE_{index}"] = value
        env["GIT_CONFIG_COUNT"] = str(start + len(config))
        return env

    # --- errors ---------------------------------------------------------------------------

    def _classify(
        self, failure: _GitFailed, previous: str | None, path: Path
    ) -> SourceError | None:
        """The SourceError a failed fetch means, or None when it is none of the known
        problems."""
        text = failure.stderr
        lowered = text.lower()
        url = self.shown_url
        if failure.timed_out:
            return SourceError(
                f"fetching {url} timed out after {self.timeout:g} s",
                "the remote did not answer in time; the next fetch tries again "
                "(the cache keeps the last fetched commit)",
            )
        if "couldn't find remote ref" in lowered:
            return self._missing_branch(previous, path)
        if any(s in lowered for s in _AUTH_FAILED):
            if not _is_http(self.url):
                return SourceError(
                    f"{url} refused access: {_reason(text)}",
                    "check that this machine's ssh key (or the server's access rules) let "
                    "the daemon read the repository",
                )
            if self.credentials is None:
                return SourceError(
                    f"{url} asks for credentials",
                    "give the daemon a username and a password or token for this remote",
                )
            return SourceError(
                f"authentication to {url} failed: the credentials were refused",
                "check the username and the token (and that the token may read this repository)",
            )
        unreachable = next((why for s, why in _UNREACHABLE.items() if s in lowered), None)
        if unreachable is not None:
            return SourceError(
                f"cannot reach {url}: {unreachable}",
                "check the URL, and that the git server is up and reachable from this "
                "machine; the next fetch tries again",
            )
        if any(s in lowered for s in _NOT_A_REPOSITORY):
            return SourceError(
                f"{url} is not a git repository: {_reason(text)}",
                "check the URL: it is what `git clone` takes, and the repository must exist there",
            )
        return None

    def _missing_branch(self, previous: str | None, path: Path) -> SourceError:
        branches = self._remote_branches(path)
        there = f"branches there: {', '.join(branches)}" if branches else "it has no branches"
        if previous is not None:
            return SourceError(
                f"branch {self.branch!r} no longer exists on {self.shown_url}",
                f"the cache keeps the last fetched commit {previous[:12]}; push the branch "
                f"again or watch another one ({there})",
            )
        return SourceError(f"branch {self.branch!r} does not exist on {self.shown_url}", there)

    def _remote_branches(self, path: Path, limit: int = 20) -> list[str]:
        try:
            out = self._run(path, "ls-remote", "--heads", "origin", remote=True)
        except _GitFailed:
            return []
        names = [line.split("refs/heads/", 1)[-1] for line in out.splitlines() if line]
        return names[:limit]

    def _unexpected(self, failure: _GitFailed) -> SourceError:
        return SourceError(
            f"git fetch from {self.shown_url} failed (exit {failure.status}): "
            f"{_reason(failure.stderr)}"
        )


_AUTH_FAILED = (
    "authentication failed",
    "could not read username",
    "could not read password",
    "terminal prompts disabled",
    "returned error: 401",
    "returned error: 403",
    "permission denied",
)
# What git or curl says when the remote cannot be reached, and how a message says it.
_UNREACHABLE = {
    "connection refused": "connection refused",
    "couldn't connect to server": "connection refused",
    "could not resolve host": "unknown host",
    "could not resolve hostname": "unknown host",
    "name or service not known": "unknown host",
    "connection timed out": "connection timed out",
    "network is unreachable": "network is unreachable",
    "no route to host": "no route to host",
    "connection reset": "connection reset",
    "unable to connect": "cannot connect",
    "failed to connect": "cannot connect",
}
_NOT_A_REPOSITORY = (
    "not found",
    "does not appear to be a git repository",
    "is this a git repository",
    "no such repository",
    "not exported",
    "not a git repository",
)


def _reason(stderr: str) -> str:
    """The last meaningful lines of git's stderr, on one line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    lines = [re.sub(r"^(fatal|error): ", "", line) for line in lines[-3:]]
    return "; ".join(lines) or "git gave no reason"


def _config_count(environ: Mapping[str, str]) -> int:
    try:
        return max(0, int(environ.get("GIT_CONFIG_COUNT", "0")))
    except ValueError:
        return 0


def _is_http(url: str) -> bool:
    return url.lower().startswith(("http://", "https://"))


def _fetch_url(url: str) -> str:
    """What git fetches from: no userinfo in http(s) URLs (credentials go through the
    helper); other URLs keep their user name (`ssh://git@host/...`) but never a password."""
    if "://" not in url or _is_http(url):
        return without_user_info(url)
    parts = urlsplit(url)
    if parts.username is None:
        return without_user_info(url)
    netloc = f"{parts.username}@{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _with_url_username(credentials: Credentials | None, url: str) -> Credentials | None:
    """Credentials without a username take the one written in an http(s) URL, if any."""
    if credentials is None or credentials.username is not None or not _is_http(url):
        return credentials
    username = unquote(urlsplit(url).username or "")
    return Credentials(username, credentials.password) if username else credentials


def _credentials_in(url: str) -> Credentials | None:
    """Credentials written into the URL (`https://user:token@host/...`), if any."""
    if not _is_http(url):
        return None
    parts = urlsplit(url)
    if parts.password is None:
        return None
    return Credentials(unquote(parts.username or "") or None, unquote(parts.password))


def _secret_forms(credentials: Credentials) -> list[str]:
    password = credentials.password
    pair = f"{credentials.username or DEFAULT_USERNAME}:{password}"
    return [password, quote(password, safe=""), base64.b64encode(pair.encode()).decode()]


def _check_branch_name(branch: str) -> None:
    if not branch or branch.startswith("-") or branch.startswith("refs/"):
        raise UserError(
            f"{branch!r} is not a branch name", "give the branch as `git branch` shows it"
        )
    status, _, _ = git.Git().execute(
        ["git", "check-ref-format", f"refs/heads/{branch}"],
        with_extended_output=True,
        with_exceptions=False,
    )
    if status != 0:
        raise UserError(f"{branch!r} is not a valid branch name")


def _ref_from_files(git_dir: Path, branch: str) -> str | None:
    """The branch's commit as the ref files record it, read without git (which refuses a
    damaged repository)."""
    with contextlib.suppress(OSError, UnicodeDecodeError):
        text = (git_dir / "refs" / "heads" / branch).read_text().strip()
        if re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", text):
            return text
    with contextlib.suppress(OSError, UnicodeDecodeError):
        for line in (git_dir / "packed-refs").read_text().splitlines():
            sha, _, name = line.partition(" ")
            if name == f"refs/heads/{branch}" and re.fullmatch(r"[0-9a-f]{40,64}", sha):
                return sha
    return None


def cache_directory_name(url: str) -> str:
    """A stable directory name for a URL: readable host and path, plus a short hash of the
    whole URL (without credentials) so that two URLs never share a cache."""
    clean = strip_credentials(url)
    digest = hashlib.sha256(clean.encode()).hexdigest()[:12]
    if "://" in clean:
        parts = urlsplit(clean)
        readable = f"{parts.hostname or ''}{f'_{parts.port}' if parts.port else ''}{parts.path}"
    else:
        readable = clean
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", readable.removesuffix(".git")).strip("._-")
    return f"{readable[-60:].lstrip('._-') or 'repository'}-{digest}"


__all__ = [
    "Credentials",
    "FetchResult",
    "RemoteRepository",
    "cache_directory_name",
]
