"""`prefect.deployments.steps.git_clone`, implemented natively (docs/design-notes.md#builtin-steps).

Steps run during apply, after the plan, never during a dry-run (and on workers, as pull
steps). Same arguments, checks, destination and output as Prefect's step. Credentials go into
`https` URLs only and are masked in all output. Unlike Prefect, the clone's `origin` is set
back to the URL without credentials, so no token is left in `.git/config`; updates of an
existing clone fetch from the credentialed URL directly.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from reconciler.steps.context import StepContext, StepError
from reconciler.steps.process import ProcessResult, run_process

_COMMIT_SHA = re.compile(r"^[0-9a-fA-F]{4,64}$")


def git_clone(
    repository: str,
    branch: str | None = None,
    commit_sha: str | None = None,
    include_submodules: bool = False,
    access_token: str | None = None,
    credentials: Mapping[str, Any] | None = None,
    directories: list[str] | None = None,
    clone_directory_name: str | None = None,
    *,
    context: StepContext,
) -> dict[str, str]:
    """Clone `repository` (or update an earlier clone) into the context's cwd; returns the
    clone's directory relative to that cwd."""
    _check_arguments(branch, commit_sha, access_token, credentials)
    if access_token:
        credentials = {"access_token": access_token}
    userinfo = url_userinfo(repository, credentials) if credentials else None
    if userinfo and credentials:
        context.hide(*_secret_forms(credentials, userinfo))
    git = _Git(context, _Source(repository, userinfo, include_submodules))
    destination = context.cwd / (clone_directory_name or default_directory_name(repository, branch))
    checkout = _Checkout(git, destination, branch, commit_sha, include_submodules, directories)
    updated = (destination / ".git").exists()
    if updated:
        checkout.update()
    else:
        checkout.clone()
    directory = os.path.relpath(destination, context.cwd)
    head = git.run("rev-parse", "--short=12", "HEAD", cwd=destination, show=False).stdout.strip()
    verb = "updated the clone of" if updated else "cloned"
    context.output.note(f"{verb} {git.source.clean_url} at {head or '?'} into {directory}")
    return {"directory": directory}


def _check_arguments(
    branch: str | None,
    commit_sha: str | None,
    access_token: str | None,
    credentials: Mapping[str, Any] | None,
) -> None:
    if access_token and credentials:
        raise StepError(
            "git_clone takes either `access_token` or `credentials`, not both",
            hint="keep one of them",
        )
    if branch and commit_sha:
        raise StepError(
            "git_clone takes either `branch` or `commit_sha`, not both",
            hint="a commit already names what to check out: drop `branch`",
        )
    if branch and branch.startswith("-"):
        raise StepError(f"the branch name {branch!r} cannot start with '-'")
    if commit_sha is not None and not _COMMIT_SHA.match(commit_sha):
        raise StepError(f"{commit_sha!r} is not a commit SHA: expected 4 to 64 hexadecimal digits")


def default_directory_name(repository: str, branch: str | None) -> str:
    """Prefect's destination: the repository's last path segment without `.git`, followed by
    `-<branch>` (slashes replaced by dashes) when a branch is given."""
    name = urlsplit(repository).path.rstrip("/").split("/")[-1].removesuffix(".git")
    return f"{name}-{branch.replace('/', '-')}" if branch else name


def url_userinfo(repository: str, credentials: Mapping[str, Any]) -> str:
    """The `user:token` part of an https URL for `credentials`, in each host's convention
    (GitLab `oauth2:`, Bitbucket `x-token-auth:`, Bitbucket Server `user:token`), each part
    URL-quoted."""
    token = (
        credentials.get("access_token") or credentials.get("token") or credentials.get("password")
    )
    if not token:
        raise StepError(
            "the git credentials have no `access_token`, `token` or `password`",
            hint="give one of them (for example from a secret block)",
        )
    return ":".join(
        quote(part, safe="")
        for part in _credential_text(repository, credentials, str(token)).split(":", 1)
    )


def _credential_text(repository: str, credentials: Mapping[str, Any], token: str) -> str:
    host = urlsplit(repository).netloc
    username = credentials.get("username")
    if username:
        return f"{username}:{token}"
    if "bitbucketserver" in host:
        if ":" not in token:
            raise StepError(
                "cloning from Bitbucket Server needs a username with the token",
                hint="set `username` in the credentials, or write the token as 'user:token'",
            )
        return token
    if "bitbucket" in host:
        return token if ":" in token else f"x-token-auth:{token}"
    if "gitlab" in host:
        return token if ":" in token else f"oauth2:{token}"
    return token


def _secret_forms(credentials: Mapping[str, Any], userinfo: str) -> list[str]:
    secrets = [
        str(credentials[key])
        for key in ("access_token", "token", "password")
        if credentials.get(key)
    ]
    return [*secrets, *(quote(secret, safe="") for secret in secrets), userinfo]


def _with_userinfo(url: str, userinfo: str | None) -> str:
    parts = urlsplit(url)
    if parts.scheme != "https" or not userinfo:
        return url
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{host}"))


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if not parts.scheme or "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]))


@dataclass(frozen=True)
class _Source:
    url: str
    userinfo: str | None
    include_submodules: bool

    @property
    def clean_url(self) -> str:
        return _without_userinfo(self.url)

    @property
    def fetch_url(self) -> str:
        return _with_userinfo(self.url, self.userinfo)

    def git_config(self) -> list[str]:
        """Private submodules need the credentials too: rewrite their host's URLs."""
        if not (self.include_submodules and self.userinfo):
            return []
        base = urlunsplit(urlsplit(self.clean_url)._replace(path="", query="", fragment=""))
        return ["-c", f"url.{_with_userinfo(base, self.userinfo)}.insteadOf={base}"]


class _Git:
    def __init__(self, context: StepContext, source: _Source) -> None:
        self.context = context
        self.source = source
        self.env = {**context.env, "GIT_TERMINAL_PROMPT": "0"}

    def run(self, *args: str, cwd: Path | None = None, show: bool = True) -> ProcessResult:
        # No "detached HEAD" advice: it would fill the last lines shown when a later step fails.
        command = ["git", "-c", "advice.detachedHead=false", *self.source.git_config(), *args]
        return run_process(command, context=self.context, cwd=cwd, env=self.env, show=show)

    def check(self, *args: str, cwd: Path | None = None, action: str) -> None:
        # Not shown: a clone is one line in the run's log (`_Checkout.say_done`); git's own
        # lines (and its warnings) are kept for the error when it fails.
        result = self.run(*args, cwd=cwd, show=False)
        if result.exit_code != 0:
            self.context.output.note(f"$ {shlex.join(['git', *args])}")  # masked when shown
            raise StepError(
                f"{action} {self.source.clean_url!r} failed",
                exit_code=result.exit_code,
                hint="check the repository URL, the branch or commit, and the credentials "
                "(git's message is in the last lines above)",
            )


@dataclass
class _Checkout:
    git: _Git
    destination: Path
    branch: str | None
    commit_sha: str | None
    include_submodules: bool
    directories: list[str] | None

    def clone(self) -> None:
        options = ["--recurse-submodules"] if self.include_submodules else []
        if self.directories:
            options.append("--sparse")
        if self.commit_sha:
            options += ["--filter=blob:none", "--no-checkout"]
        else:
            options += [*(["--branch", self.branch] if self.branch else []), "--depth", "1"]
        source = self.git.source
        self.git.check(
            "clone", *options, "--", source.fetch_url, str(self.destination), action="cloning"
        )
        self.git.check(
            "remote", "set-url", "origin", source.clean_url, cwd=self.destination, action="cloning"
        )
        self._check_out_directories()
        if self.commit_sha:
            self.git.check("checkout", self.commit_sha, cwd=self.destination, action="checking out")

    def update(self) -> None:
        """Bring an earlier clone of the same repository up to date; re-clone it when that
        fails (without a commit), as Prefect does."""
        self._check_origin()
        if self.commit_sha:
            self._check_out_commit()
        elif not self._pulled():
            shutil.rmtree(self.destination)
            self.clone()

    def _check_origin(self) -> None:
        found = self.git.run(
            "config", "--get", "remote.origin.url", cwd=self.destination, show=False
        )
        origin = _without_userinfo(found.stdout.strip())
        if origin != self.git.source.clean_url:
            raise StepError(
                f"{str(self.destination)!r} already holds a clone of {origin!r}, not of "
                f"{self.git.source.clean_url!r}",
                hint="set `clone_directory_name` to another directory, or remove that one",
            )

    def _pulled(self) -> bool:
        branch = [self.branch] if self.branch else []
        commands = [
            ["fetch", "--depth", "1", "--", self.git.source.fetch_url, *branch],
            ["reset", "--keep", "FETCH_HEAD"],
        ]
        if self.include_submodules:
            commands.append(["submodule", "update", "--init", "--recursive"])
        for command in commands:
            if self.git.run(*command, cwd=self.destination, show=False).exit_code != 0:
                return False
        self._check_out_directories()
        return True

    def _check_out_commit(self) -> None:
        assert self.commit_sha is not None
        present = self.git.run(
            "cat-file", "-e", f"{self.commit_sha}^{{commit}}", cwd=self.destination, show=False
        )
        if present.exit_code != 0:
            shallow = ["--unshallow"] if (self.destination / ".git" / "shallow").exists() else []
            self.git.check(
                "fetch",
                *shallow,
                "--",
                self.git.source.fetch_url,
                "+refs/heads/*:refs/remotes/origin/*",
                cwd=self.destination,
                action="fetching",
            )
        self._check_out_directories()
        self.git.check("checkout", self.commit_sha, cwd=self.destination, action="checking out")

    def _check_out_directories(self) -> None:
        if self.directories:
            self.git.check(
                "sparse-checkout",
                "set",
                "--",
                *self.directories,
                cwd=self.destination,
                action="checking out directories of",
            )
