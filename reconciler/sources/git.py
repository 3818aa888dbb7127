"""Local git repositories as Snapshots: the committed tree at a ref, or the working copy.

The default reads `git ls-tree` at the resolved commit and blobs through one long-lived
`git cat-file --batch`, so what is planned is exactly what is committed; `worktree=True` reads
tracked and untracked (not ignored) files from disk for local iteration.

This read path talks to git's plumbing directly rather than through gitpython: importing
gitpython alone costs about 0.1 s, a fifth of the dry-run budget. Remote repositories (clone,
fetch) use gitpython.
"""

from __future__ import annotations

import os
import stat
import subprocess
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from reconciler.core.errors import SourceError
from reconciler.core.url_credentials import strip_credentials
from reconciler.sources.base import PathKind, normalize

_MODE_KIND = {"100644": PathKind.FILE, "100755": PathKind.FILE, "120000": PathKind.SYMLINK}


def open_repository(
    path: str, *, ref: str = "HEAD", worktree: bool = False, display_root: str | None = None
) -> GitSnapshot | WorktreeSnapshot:
    """The repository at `path` (working copy or bare) as a Snapshot at `ref`; messages name
    it `display_root` (default: `path`), e.g. the URL of a remote's cache."""
    repo = _Repository.open(path)
    if worktree:
        if repo.bare:
            raise SourceError(
                f"{path} is a bare repository: it has no working copy to read",
                "drop --worktree to read the committed tree",
            )
        return WorktreeSnapshot(repo, display_root or path)
    return GitSnapshot(repo, display_root or path, ref)


class _Repository:
    """A local repository and the git commands run in it."""

    def __init__(self, root: Path, bare: bool) -> None:
        self.root = root
        self.bare = bare

    @classmethod
    def open(cls, path: str) -> _Repository:
        if not os.path.exists(path):
            if "://" in path:  # shown without any credential it carries
                raise SourceError(
                    f"{strip_credentials(path)}: not a local repository",
                    "clone it and give its path, or let the daemon watch the URL (daemon.yaml)",
                )
            raise SourceError(f"{path}: no such file or directory", "check the repository path")
        if not os.path.isdir(path):
            raise SourceError(f"{path} is a file, not a repository directory")
        # One call: a bare repository answers the first two and fails on the third.
        probe = _run(
            [
                "git",
                "-C",
                path,
                "rev-parse",
                "--is-bare-repository",
                "--absolute-git-dir",
                "--show-toplevel",
            ]
        )
        lines = probe.stdout.splitlines()
        bare = len(lines) >= 2 and lines[0].strip() == "true"
        if bare:
            return cls(Path(lines[1]).resolve(), True)
        if probe.returncode != 0 or len(lines) < 3:
            raise SourceError(
                f"{path} is not a git repository",
                "pass the root of a git clone (the directory holding .git), or run `git init` "
                "and commit your prefect.yaml",
            )
        top = lines[2].strip()
        root = Path(top).resolve()
        if root != Path(path).resolve():
            raise SourceError(
                f"{path} is inside the git repository {root}, not its root",
                f"pass {root} (and --prefect-file to pick files in a subdirectory)",
            )
        return cls(root, False)

    def git(self, *args: str) -> str:
        done = _run(["git", "-C", str(self.root), *args])
        if done.returncode != 0:
            raise SourceError(f"git {args[0]} failed in {self.root}: {done.stderr.strip()}")
        return done.stdout

    def identity(self) -> str:
        """The owner name recorded on objects: the `origin` URL without credentials, else the
        absolute path of the repository."""
        url = _run(["git", "-C", str(self.root), "config", "--get", "remote.origin.url"]).stdout
        if url.strip():
            return strip_credentials(url.strip()).removesuffix(".git")
        return str(self.root)

    def resolve_commit(self, ref: str, location: str) -> str:
        done = _run(
            ["git", "-C", str(self.root), "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"]
        )
        if done.returncode != 0 or ref.startswith("-"):
            raise SourceError(f"ref {ref!r} does not exist in {location}", self._ref_hint())
        return done.stdout.strip()

    def _ref_hint(self) -> str:
        done = _run(
            [
                "git",
                "-C",
                str(self.root),
                "for-each-ref",
                "--count=20",
                "--format=%(refname:short)",
                "refs/heads",
                "refs/tags",
            ]
        )
        names = done.stdout.split()
        if not names:
            return "the repository has no commits yet: commit your files first"
        return "refs here: " + ", ".join(names)


class _BlobReader:
    """One `git cat-file --batch` process for all the blobs a plan reads (one per process: a
    forked worker must not talk over its parent on the same pipe)."""

    def __init__(self, root: Path) -> None:
        self.pid = os.getpid()
        self._process = subprocess.Popen(
            ["git", "-C", str(root), "cat-file", "--batch"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        weakref.finalize(self, _close, self._process)

    def read(self, sha: str) -> bytes:
        stdin: IO[bytes] | None = self._process.stdin
        stdout: IO[bytes] | None = self._process.stdout
        assert stdin is not None and stdout is not None
        stdin.write(sha.encode() + b"\n")
        stdin.flush()
        header = stdout.readline().split()
        if len(header) != 3:
            raise FileNotFoundError(sha)
        data = stdout.read(int(header[2]))
        stdout.read(1)  # the newline after each object
        return data


def _close(process: subprocess.Popen[bytes]) -> None:
    if process.stdin:
        process.stdin.close()
    process.wait(timeout=5)
    if process.stdout:
        process.stdout.close()


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    return subprocess.run(args, capture_output=True, text=True, env=env, check=False)


class GitSnapshot:
    """The tree of one commit."""

    def __init__(self, repo: _Repository, location: str, ref: str) -> None:
        self._repo = repo
        self._location = location
        self.ref = ref
        self._commit = repo.resolve_commit(ref, location)
        self._entries = self._list_tree()
        self._repo_id = repo.identity()
        self._blobs: _BlobReader | None = None

    def _list_tree(self) -> dict[str, tuple[PathKind, str]]:
        output = self._repo.git("ls-tree", "-r", "-t", "-z", "--full-tree", self._commit)
        entries: dict[str, tuple[PathKind, str]] = {}
        for record in output.split("\0"):
            if not record:
                continue
            meta, path = record.split("\t", 1)
            mode, object_type, sha = meta.split()
            if object_type == "tree":
                entries[path] = (PathKind.DIRECTORY, sha)
            elif object_type == "commit":
                entries[path] = (PathKind.OTHER, sha)  # a submodule
            else:
                entries[path] = (_MODE_KIND.get(mode, PathKind.OTHER), sha)
        return entries

    @property
    def repo_id(self) -> str:
        return self._repo_id

    @property
    def commit(self) -> str | None:
        return self._commit

    @property
    def display_root(self) -> str:
        return self._location

    def files(self) -> Iterable[str]:
        return sorted(p for p, (kind, _) in self._entries.items() if kind is not PathKind.DIRECTORY)

    def kind(self, path: str) -> PathKind | None:
        path = normalize(path)
        if path == "":
            return PathKind.DIRECTORY
        entry = self._entries.get(path)
        return entry[0] if entry else None

    def entry(self, path: str) -> tuple[PathKind, str] | None:
        """What is at `path` and its git object id (None when nothing is there): what the
        per-file cache of a plan is keyed by (reconciler/desired/build_cache.py)."""
        return self._entries.get(normalize(path))

    def checkout(self, destination: Path) -> Path:
        """Write the commit's files under `destination` (for steps, which need real files)."""
        destination.mkdir(parents=True, exist_ok=True)
        archive = subprocess.Popen(
            ["git", "-C", str(self._repo.root), "archive", "--format=tar", self._commit],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        unpack = subprocess.run(
            ["tar", "-x", "-C", str(destination)], stdin=archive.stdout, capture_output=True
        )
        if archive.stdout is not None:
            archive.stdout.close()
        if archive.wait() != 0 or unpack.returncode != 0:
            raise SourceError(
                f"cannot check out {self._commit[:12]} of {self._location} for its steps: "
                f"{unpack.stderr.decode(errors='replace').strip()}"
            )
        return destination

    def link_target(self, path: str) -> str:
        path = normalize(path)
        entry = self._entries.get(path)
        if entry is None or entry[0] is not PathKind.SYMLINK:
            raise FileNotFoundError(path)
        return self._blob(entry[1]).decode(errors="replace")  # a link's blob is its target

    def read(self, path: str) -> bytes:
        path = normalize(path)
        entry = self._entries.get(path)
        if entry is None or entry[0] is not PathKind.FILE:
            raise FileNotFoundError(path)
        return self._blob(entry[1])

    def _blob(self, sha: str) -> bytes:
        if self._blobs is None or self._blobs.pid != os.getpid():
            self._blobs = _BlobReader(self._repo.root)
        return self._blobs.read(sha)


class WorktreeSnapshot:
    """Tracked and untracked, not ignored, files of the working copy, as they are on disk."""

    def __init__(self, repo: _Repository, location: str) -> None:
        self._location = location
        self.ref = "worktree"
        self._root = repo.root
        listed = repo.git("ls-files", "-z", "--cached", "--others", "--exclude-standard")
        self._paths = sorted(
            {p for p in listed.split("\0") if p and os.path.lexists(self._root / p)}
        )
        self._repo_id = repo.identity()

    @property
    def repo_id(self) -> str:
        return self._repo_id

    @property
    def commit(self) -> str | None:
        return None

    @property
    def display_root(self) -> str:
        return self._location

    def files(self) -> Iterable[str]:
        return list(self._paths)

    def kind(self, path: str) -> PathKind | None:
        target = self._root / normalize(path)
        try:
            mode = os.lstat(target).st_mode
        except OSError:
            return None
        if stat.S_ISLNK(mode):
            return PathKind.SYMLINK
        if stat.S_ISDIR(mode):
            return PathKind.DIRECTORY
        return PathKind.FILE if stat.S_ISREG(mode) else PathKind.OTHER

    def checkout(self, destination: Path) -> Path:
        """The working copy itself: steps run on the files as they are."""
        return self._root

    def link_target(self, path: str) -> str:
        if self.kind(path) is not PathKind.SYMLINK:
            raise FileNotFoundError(path)
        return os.readlink(self._root / normalize(path))

    def read(self, path: str) -> bytes:
        if self.kind(path) is not PathKind.FILE:
            raise FileNotFoundError(path)
        return (self._root / normalize(path)).read_bytes()
