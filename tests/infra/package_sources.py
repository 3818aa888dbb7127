"""Test infrastructure, outside the pipeline: where this machine gets its packages from.

No package index host is written in this repository. The Docker tests' base image is made with
debootstrap from the Debian mirror this machine's apt already uses, and reconciler's image is
built with the pip index this machine's pip is configured with:

- `apt_mirror(suite)` reads apt's sources: `sources.list` and `sources.list.d/*.list` (one-line
  format) and `sources.list.d/*.sources` (deb822 stanzas), and returns the first `deb` URI that
  serves `suite`;
- `pip_index_url()` reads pip's configuration: `PIP_INDEX_URL`, then what `pip config list`
  reports (the files pip reads: /etc/pip.conf, /etc/xdg/pip/pip.conf, ~/.config/pip/pip.conf,
  ~/.pip/pip.conf, $PIP_CONFIG_FILE), then those files directly when pip cannot be run.

Both raise `NoPackageSource`, saying what to configure, when the machine has none.
"""

from __future__ import annotations

import configparser
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

APT_DIR = Path("/etc/apt")
PIP_INDEX_KEYS = ("global.index-url", "install.index-url", "download.index-url")
_BRACKETED_OPTIONS = re.compile(r"\[[^\]]*\]")


class NoPackageSource(Exception):
    """This machine's configuration names no package source of the kind asked for."""


# --- apt --------------------------------------------------------------------------------------


def apt_mirror(suite: str, apt_dir: Path = APT_DIR) -> str:
    """The first `deb` URI of apt's sources under `apt_dir` that serves `suite`."""
    sources_d = apt_dir / "sources.list.d"
    one_line_files = [apt_dir / "sources.list", *sorted(sources_d.glob("*.list"))]
    for path in one_line_files:
        if path.is_file():
            for uri, suites in _one_line_entries(path.read_text()):
                if suite in suites:
                    return uri
    for path in sorted(sources_d.glob("*.sources")):
        for uri, suites in _deb822_entries(path.read_text()):
            if suite in suites:
                return uri
    raise NoPackageSource(
        f"apt has no `deb` source for Debian {suite} in {apt_dir}/sources.list, "
        f"{sources_d}/*.list or {sources_d}/*.sources; add one for your Debian mirror "
        f"(for example a line `deb MIRROR-URL {suite} main` in {apt_dir}/sources.list)"
    )


def _one_line_entries(text: str) -> Iterable[tuple[str, list[str]]]:
    """(URI, [suite]) for each `deb` line of a one-line-format file (`deb [opts] URI SUITE ...`)."""
    for raw in text.splitlines():
        line = _BRACKETED_OPTIONS.sub(" ", raw.split("#", 1)[0])
        words = line.split()
        if len(words) >= 3 and words[0] == "deb":
            yield words[1], [words[2]]


def _deb822_entries(text: str) -> Iterable[tuple[str, list[str]]]:
    """(URI, suites) for each enabled stanza of type `deb` of a deb822 `.sources` file."""
    for stanza in re.split(r"\n\s*\n", text):
        fields = _deb822_fields(stanza)
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        uris = fields.get("uris", "").split()
        if uris:
            yield uris[0], fields.get("suites", "").split()


def _deb822_fields(stanza: str) -> dict[str, str]:
    """Field name (lower case) to value; continuation lines are joined, comments dropped."""
    fields: dict[str, str] = {}
    current = ""
    for line in stanza.splitlines():
        if line.startswith("#"):
            continue
        if line[:1].isspace() and current:
            fields[current] += " " + line.strip()
            continue
        key, colon, value = line.partition(":")
        if colon:
            current = key.strip().lower()
            fields[current] = value.strip()
    return fields


# --- pip --------------------------------------------------------------------------------------

PipConfigLister = Callable[[], str | None]


def pip_index_url(
    environ: Mapping[str, str] | None = None,
    list_pip_config: PipConfigLister | None = None,
    config_files: Iterable[Path] | None = None,
) -> str:
    """The index this machine's pip installs from, as its configuration says."""
    env = os.environ if environ is None else environ
    if env.get("PIP_INDEX_URL"):
        return env["PIP_INDEX_URL"]
    listed = (list_pip_config or _pip_config_list)()
    if listed is not None:
        found = index_from_pip_config_list(listed)
    else:
        files = list(config_files) if config_files is not None else _pip_config_files(env)
        found = index_from_config_files(files)
    if found:
        return found
    raise NoPackageSource(
        "pip has no package index configured on this machine (no PIP_INDEX_URL, no `index-url` "
        "in `pip config list`); set one with `pip config set global.index-url URL` or "
        "PIP_INDEX_URL=URL"
    )


def index_from_pip_config_list(listed: str) -> str | None:
    """The index URL in the output of `pip config list` (`global.index-url='URL'` lines)."""
    values: dict[str, str] = {}
    for line in listed.splitlines():
        key, equals, value = line.partition("=")
        if equals:
            values[key.strip()] = value.strip().strip("'\"")
    for key in (":env:.index-url", *PIP_INDEX_KEYS):
        if values.get(key):
            return values[key]
    return None


def index_from_config_files(paths: Iterable[Path]) -> str | None:
    """The index URL of pip's configuration files; a later file overrides an earlier one."""
    found: str | None = None
    for path in paths:
        if not path.is_file():
            continue
        parser = configparser.ConfigParser(interpolation=None)
        parser.read(path)
        for key in PIP_INDEX_KEYS:
            section, _, option = key.partition(".")
            if parser.has_option(section, option):
                found = parser.get(section, option).strip() or found
                break
    return found


def _pip_config_files(env: Mapping[str, str]) -> list[Path]:
    """pip's configuration files, in the order pip reads them (later ones win)."""
    home = Path(env.get("HOME", str(Path.home())))
    xdg = Path(env.get("XDG_CONFIG_HOME", str(home / ".config")))
    files = [Path("/etc/xdg/pip/pip.conf"), Path("/etc/pip.conf")]
    files += [home / ".pip" / "pip.conf", xdg / "pip" / "pip.conf"]
    if env.get("PIP_CONFIG_FILE"):
        files.append(Path(env["PIP_CONFIG_FILE"]))
    return files


def _pip_config_list() -> str | None:
    """`pip config list` of this interpreter's pip, or None when it cannot be run."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None
