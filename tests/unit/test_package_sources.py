"""Where the test infrastructure finds package sources (tests/infra/package_sources.py): apt's
sources in both formats and pip's configuration, read from sample files; a machine with none
gets an error that says what to configure."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.infra.package_sources import (
    NoPackageSource,
    apt_mirror,
    index_from_config_files,
    index_from_pip_config_list,
    pip_index_url,
)


def apt_dir(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "apt"
    (root / "sources.list.d").mkdir(parents=True)
    for name, text in files.items():
        (root / name).write_text(textwrap.dedent(text))
    return root


def test_a_one_line_sources_list_names_the_mirror(tmp_path: Path) -> None:
    root = apt_dir(
        tmp_path,
        {
            "sources.list": """\
                # deb http://commented.invalid/debian bookworm main
                deb-src http://source-only.invalid/debian bookworm main
                deb [arch=amd64 signed-by=/k.gpg] http://mirror.invalid/debian bookworm main
                deb http://mirror.invalid/debian-security bookworm-security main
            """
        },
    )
    assert apt_mirror("bookworm", root) == "http://mirror.invalid/debian"
    assert apt_mirror("bookworm-security", root) == "http://mirror.invalid/debian-security"


def test_list_files_in_sources_list_d_are_read(tmp_path: Path) -> None:
    root = apt_dir(
        tmp_path,
        {"sources.list.d/local.list": "deb [ trusted=yes ] http://local.invalid/deb bookworm\n"},
    )
    assert apt_mirror("bookworm", root) == "http://local.invalid/deb"


def test_deb822_stanzas_are_read_with_comments_and_disabled_ones_skipped(tmp_path: Path) -> None:
    root = apt_dir(
        tmp_path,
        {
            "sources.list.d/debian.sources": """\
                Types: deb
                URIs: http://disabled.invalid/debian
                Suites: bookworm
                Components: main
                Enabled: no

                Types: deb deb-src
                # a comment inside the stanza
                URIs: http://mirror.invalid/debian
                  http://second.invalid/debian
                Suites: bookworm bookworm-updates
                Components: main
                Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
            """,
            "sources.list.d/other.sources": (
                "Types: deb\nURIs: http://other.invalid/node\nSuites: nodistro\n"
            ),
        },
    )
    assert apt_mirror("bookworm-updates", root) == "http://mirror.invalid/debian"
    assert apt_mirror("nodistro", root) == "http://other.invalid/node"


def test_no_source_for_the_suite_says_what_to_add(tmp_path: Path) -> None:
    root = apt_dir(tmp_path, {"sources.list": "deb http://mirror.invalid/debian trixie main\n"})
    with pytest.raises(
        NoPackageSource, match=r"no `deb` source for Debian bookworm.*sources\.list"
    ):
        apt_mirror("bookworm", root)


def test_pip_config_list_output_gives_the_index() -> None:
    listed = (
        ":env:.default-timeout='180'\n"
        "global.cert='/etc/ssl/certs/ca-certificates.crt'\n"
        "global.index-url='http://pypi-mirror.invalid/simple'\n"
    )
    assert index_from_pip_config_list(listed) == "http://pypi-mirror.invalid/simple"
    assert index_from_pip_config_list("global.cert='/x'\n") is None


def test_pip_index_url_prefers_the_environment_then_pip_config() -> None:
    listed = "install.index-url='http://from-config.invalid/simple'\n"
    assert (
        pip_index_url({"PIP_INDEX_URL": "http://from-env.invalid/simple"}, lambda: listed)
        == "http://from-env.invalid/simple"
    )
    assert pip_index_url({}, lambda: listed) == "http://from-config.invalid/simple"


def test_pip_configuration_files_are_read_when_pip_cannot_be_run(tmp_path: Path) -> None:
    system = tmp_path / "pip.conf"
    system.write_text(
        "[global]\ncert = /etc/ssl/certs/ca.crt\nindex-url = http://system.invalid/\n"
    )
    user = tmp_path / "user.conf"
    user.write_text("[install]\nindex-url = http://user.invalid/simple\n")
    assert index_from_config_files([system]) == "http://system.invalid/"
    assert index_from_config_files([system, user]) == "http://user.invalid/simple"
    assert pip_index_url({}, lambda: None, [system, tmp_path / "absent.conf"]) == (
        "http://system.invalid/"
    )


def test_no_pip_index_configured_says_how_to_set_one(tmp_path: Path) -> None:
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\ncert = /etc/ssl/certs/ca.crt\n")
    with pytest.raises(NoPackageSource, match=r"pip config set global\.index-url"):
        pip_index_url({}, lambda: "global.cert='/x'\n")
    with pytest.raises(NoPackageSource, match="PIP_INDEX_URL"):
        pip_index_url({}, lambda: None, [conf])
