"""Checkouts for build steps are named after their repository, as a clone would be: the
`dockerfile: auto` WORKDIR (/opt/prefect/<name>) comes from that name."""

from __future__ import annotations

import pytest

from reconciler.engine import _directory_name


@pytest.mark.parametrize(
    ("repo_id", "name"),
    [
        ("github.com/acme/flows", "flows"),
        ("https://git.example.com/acme/data-platform", "data-platform"),
        ("/srv/repos/etl", "etl"),
        ("git@host:org/proj", "proj"),
        ("host:proj", "proj"),
        ("", "repository"),
    ],
)
def test_checkout_directory_is_the_repository_name(repo_id: str, name: str) -> None:
    assert _directory_name(repo_id) == name
