"""`reconcile variable set|ls|rm --store prefect+http://...`: the variables live in the real
Prefect server (the session's), where plans against it read `{{ prefect.variables.NAME }}`."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

import pytest

from tests.conftest import CliResult, GitRepo
from tests.infra.prefect_server import PrefectServer
from tests.prefect_target.test_prefect_target import Names, project

pytestmark = pytest.mark.prefect


def server_variables(server: PrefectServer) -> dict[str, object]:
    return {v["name"]: v["value"] for v in server.request("POST", "/variables/filter", {})}


def test_variables_are_set_listed_used_by_plans_and_removed_in_prefect(
    run_cli: Callable[..., CliResult],
    make_repo: Callable[..., GitRepo],
    prefect_server: PrefectServer,
) -> None:
    names = Names()
    region = f"region_{uuid.uuid4().hex[:8]}"
    limits = f"limits_{uuid.uuid4().hex[:8]}"
    target = f"prefect+{prefect_server.api_url}"
    files = project(names.pool, names.flow, [{"name": "nightly"}])
    files["prefect.yaml"] = files["prefect.yaml"].replace(
        '{"days": 1}', '{"days": 1, "note": "{{ prefect.variables.' + region + ' }}"}'
    )
    repo = make_repo(files)

    assert run_cli("variable", "set", region, "emea", "--store", target).code == 0
    made = run_cli("variable", "set", limits, '{"cpu": 2}', "--json", "--store", target)
    assert made.stdout.strip() == f'variable "{limits}" set', made.output
    held = server_variables(prefect_server)
    assert held[region] == "emea" and held[limits] == {"cpu": 2}
    listed = json.loads(run_cli("variable", "ls", "-o", "json", "--store", target).stdout)
    assert listed[region] == "emea" and listed[limits] == {"cpu": 2}
    table = run_cli("variable", "ls", "--store", target).stdout
    assert region in table and '"emea"' in table

    planned = run_cli("plan", str(repo.path), "--store", target, "-o", "json")
    assert planned.code == 0, planned.output
    (nightly,) = [c for c in json.loads(planned.stdout)["changes"] if c["kind"] == "deployment"]
    assert nightly["desired"]["parameters"]["note"] == "emea"

    assert run_cli("variable", "set", region, "apac", "--store", target).code == 0
    assert server_variables(prefect_server)[region] == "apac"  # changed, not made twice
    removed = run_cli("variable", "rm", limits, "--store", target)
    assert removed.stdout.strip() == f'variable "{limits}" removed', removed.output
    assert limits not in server_variables(prefect_server)


def test_refusals_say_why_and_change_nothing(
    run_cli: Callable[..., CliResult], prefect_server: PrefectServer
) -> None:
    target = f"prefect+{prefect_server.api_url}"
    before = server_variables(prefect_server)
    missing = run_cli("variable", "rm", f"gone_{uuid.uuid4().hex[:8]}", "--store", target)
    assert missing.code == 1
    assert "does not exist" in missing.stderr and "variable ls" in missing.stderr
    bad = run_cli("variable", "set", "Not A Name!", "x", "--store", target)
    assert bad.code == 1, bad.output
    assert 'the Prefect server refused variable "Not A Name!"' in bad.stderr
    assert "lowercase letters" in bad.stderr
    assert "Traceback" not in bad.output + missing.output
    assert server_variables(prefect_server) == before
