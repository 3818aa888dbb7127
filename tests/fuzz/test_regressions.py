"""Every input that ever failed a fuzz test (or that reproduces an issue-13 hole), replayed as
a plain test: tests/fuzz/regressions/, one file per input, its kind in its name.

    NAME.prefect.yaml      a prefect.yaml, planned with the test project
    NAME.work-pools.yaml   a work-pools.yaml, likewise
    NAME.schedule.json     one schedule entry
    NAME.params.json       {"param": [NAME=VALUE...], "params": TEXT or null} of `deployment run`
    NAME.template.json     a value with `{{ }}` placeholders
    NAME.symlink.json      {"name": FILE, "target": TEXT}: a configuration file committed as a link
    NAME.webhook.json      {"path", "signed", "body", "headers": [[name, latin-1 text]]}

When a fuzz test fails, add its (shrunk) input here before fixing what it found.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fuzz.checks import (
    check_config,
    check_run_parameters,
    check_schedule,
    check_template,
    check_webhook,
    check_yaml,
)
from tests.fuzz.test_fuzz_templating import VALUES

pytestmark = pytest.mark.fuzz

CORPUS = Path(__file__).parent / "regressions"


def _prefect(path: Path) -> None:
    check_yaml(path.read_bytes())
    check_config({"prefect.yaml": path.read_bytes()})


def _pools(path: Path) -> None:
    check_config({"work-pools.yaml": path.read_bytes()})


def _json(path: Path) -> Any:
    return json.loads(path.read_text())


def _params(path: Path) -> None:
    data = _json(path)
    check_run_parameters(data["param"], data["params"])


def _symlink(path: Path) -> None:
    data = _json(path)
    check_config({}, symlinks={data["name"]: data["target"], "loop": data["name"]})


def _webhook(path: Path) -> None:
    data = _json(path)
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in data["headers"]]
    check_webhook(data["path"], data["body"].encode(), headers, data["signed"])


KINDS: dict[str, Callable[[Path], None]] = {
    ".prefect.yaml": _prefect,
    ".work-pools.yaml": _pools,
    ".schedule.json": lambda path: check_schedule(_json(path)),
    ".params.json": _params,
    ".template.json": lambda path: check_template(_json(path), VALUES),
    ".symlink.json": _symlink,
    ".webhook.json": _webhook,
}


def _kind(path: Path) -> Callable[[Path], None]:
    for suffix, replay in KINDS.items():
        if path.name.endswith(suffix):
            return replay
    raise AssertionError(f"{path.name}: unknown kind; name it NAME{{{','.join(KINDS)}}}")


@pytest.mark.parametrize("path", sorted(CORPUS.iterdir()), ids=lambda p: p.name)
def test_failed_input_stays_fixed(path: Path) -> None:
    _kind(path)(path)
