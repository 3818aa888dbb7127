"""Variables, secrets and secret-looking environment values, end to end: variables resolve into
plans; secret values never show in any plan form, error, history entry or stored object."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from reconciler.model.resources import Kind
from reconciler.store import open_store
from tests.conftest import CliResult, GitRepo
from tests.e2e.helpers import assert_refused, project, run_many

pytestmark = pytest.mark.e2e

Dump = Callable[[str], dict[str, list[tuple[object, ...]]]]

USES_VARIABLE = """\
deployments:
  - name: nightly
    entrypoint: flows/etl.py:ingest
    parameters:
      region: "{{ prefect.variables.region }}"
    work_pool: {name: etl}
"""

USES_SECRETS = """\
deployments:
  - name: nightly
    entrypoint: flows/etl.py:ingest
    work_pool:
      name: etl
      job_variables:
        env:
          API_TOKEN: "{{ prefect.blocks.secret.tok }}"
          DB_DSN: "postgresql://etl:{{ $DB_PASSWORD }}@db.invalid/etl"
"""

BLOCK_SECRET = "tok-7f3a9c1e-do-not-print"
# Quotes, a backslash and non-ASCII: JSON and repr escape these, and masking must still hold.
ENV_SECRET = 'pä"ss\\wörd-42'
ROTATED_SECRET = "rotated-Pa55-99"


def written_forms(secret: str) -> list[str]:
    return [secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]]


def assert_hidden(text: str, *secrets: str) -> None:
    for secret in secrets:
        for form in written_forms(secret):
            assert form not in text, f"{form!r} leaked into:\n{text}"


def test_variables_resolve_into_the_plan(
    make_repo: Callable[..., GitRepo], run_cli: Callable[..., CliResult], store_url: str
) -> None:
    store = ("--store", store_url)
    repo = make_repo(project({"prefect.yaml": USES_VARIABLE}))
    assert run_cli("variable", "set", *store, "region", "eu").code == 0
    listed = run_cli("variable", "ls", *store)
    assert listed.stdout.splitlines() == ["NAME    VALUE", 'region  "eu"']

    applied = run_cli(*store, str(repo.path))
    assert applied.code == 0, applied.output
    assert '"region": "eu"' in applied.stdout

    assert run_cli("variable", "set", *store, "region", "us").code == 0
    changed = run_cli("--dry-run", *store, str(repo.path))
    assert changed.code == 0, changed.output
    assert '~ parameters.region = "eu" -> "us"' in changed.stdout

    removed = run_cli("variable", "rm", *store, "region")
    assert removed.code == 0 and 'variable "region" removed' in removed.stdout
    unset, again, listed = run_many(
        run_cli,
        ["--dry-run", *store, str(repo.path)],
        ["variable", "rm", *store, "region"],
        ["variable", "ls", "-o", "json", *store],
    )
    assert 'warning: variable "region" is not set' in unset.stderr
    assert "reconcile variable set region VALUE" in unset.stderr
    assert_refused(again, 'variable "region" does not exist')
    assert json.loads(listed.stdout) == {}


def test_block_secret_never_in_plans_history_or_stored_objects(
    make_repo: Callable[..., GitRepo],
    run_cli: Callable[..., CliResult],
    store_url: str,
    dump_store: Dump,
) -> None:
    store = ("--store", store_url)
    repo = make_repo(project({"prefect.yaml": USES_SECRETS}))
    saved = run_cli("secret", "set", *store, "tok", stdin=BLOCK_SECRET + "\n")
    assert saved.code == 0 and 'secret "secret/tok" set' in saved.stdout
    env = {"DB_PASSWORD": ENV_SECRET}

    plans = run_many(
        run_cli,
        ["--dry-run", *store, str(repo.path)],
        ["--dry-run", "-o", "json", *store, str(repo.path)],
        ["--dry-run", "-o", "markdown", *store, str(repo.path)],
        ["secret", "ls", *store],
        env=env,
    )
    for result in plans:
        assert result.code == 0, result.output
        assert_hidden(result.output, BLOCK_SECRET)
    assert '"API_TOKEN": "{{ prefect.blocks.secret.tok }}"' in plans[0].stdout

    applied = run_cli(*store, str(repo.path), env=env)
    assert applied.code == 0, applied.output
    assert_hidden(applied.output, BLOCK_SECRET)
    history = run_cli("history", "1", *store)
    assert history.code == 0 and "API_TOKEN" in history.stdout, history.output
    assert_hidden(history.stdout, BLOCK_SECRET)

    tables = dump_store(store_url)
    assert BLOCK_SECRET in repr(tables.pop("blocks")), "the secret itself is stored, as a block"
    assert_hidden(repr(tables), BLOCK_SECRET)


def test_undefined_block_says_how_to_define_it(
    make_repo: Callable[..., GitRepo], run_cli: Callable[..., CliResult], store_url: str
) -> None:
    repo = make_repo(project({"prefect.yaml": USES_SECRETS}))
    store = ("--store", store_url)
    refused = run_cli(*store, str(repo.path), env={"DB_PASSWORD": ENV_SECRET})
    assert_refused(
        refused,
        '"{{ prefect.blocks.secret.tok }}" refers to a block that is not defined',
        "define it with `reconcile secret set secret/tok`",
    )

    defined = run_cli("secret", "set", *store, "secret/tok", stdin=BLOCK_SECRET)
    assert defined.code == 0, defined.output
    applied = run_cli(*store, str(repo.path), env={"DB_PASSWORD": ENV_SECRET})
    assert applied.code == 0, applied.output


def test_undefined_block_is_reported_where_it_is_used(
    make_repo: Callable[..., GitRepo], run_cli: Callable[..., CliResult], store_url: str
) -> None:
    repo = make_repo(project({"prefect.yaml": USES_SECRETS}))
    refused = run_cli("--dry-run", "--store", store_url, str(repo.path))
    assert_refused(
        refused,
        f'{repo.path}/prefect.yaml:8:22: error: "{{{{ prefect.blocks.secret.tok }}}}" refers '
        "to a block that is not defined",
    )


def test_secret_environment_value_is_masked_everywhere(
    make_repo: Callable[..., GitRepo],
    run_cli: Callable[..., CliResult],
    store_url: str,
) -> None:
    store = ("--store", store_url)
    repo = make_repo(project({"prefect.yaml": USES_SECRETS}))
    assert run_cli("secret", "set", *store, "tok", stdin=BLOCK_SECRET).code == 0
    env = {"DB_PASSWORD": ENV_SECRET}

    text, as_json, markdown = run_many(
        run_cli,
        ["--dry-run", *store, str(repo.path)],
        ["--dry-run", "-o", "json", *store, str(repo.path)],
        ["--dry-run", "-o", "markdown", *store, str(repo.path)],
        env=env,
    )
    for result in (text, as_json, markdown):
        assert result.code == 0, result.output
        assert_hidden(result.output, ENV_SECRET)
    assert '"DB_DSN": "postgresql://etl:(sensitive value)@db.invalid/etl"' in text.stdout
    assert '"DB_DSN": "postgresql://etl:(sensitive value)@db.invalid/etl"' in markdown.stdout
    desired = json.loads(as_json.stdout)["changes"][-1]["desired"]
    assert desired["job_variables"]["env"]["DB_DSN"] == (
        "postgresql://etl:(sensitive value)@db.invalid/etl"
    )

    applied = run_cli(*store, str(repo.path), env=env)
    assert applied.code == 0, applied.output
    history = run_cli("history", "1", *store)
    assert "(sensitive value)@db.invalid" in history.stdout, history.output
    assert_hidden(history.stdout, ENV_SECRET)
    stored = open_store(store_url, readonly=True)
    try:
        deployment = stored.get(Kind.DEPLOYMENT, "ingest/nightly")
    finally:
        stored.close()
    assert deployment is not None  # the worker needs the value: it is stored, never shown
    assert deployment.spec["job_variables"]["env"]["DB_DSN"].count(ENV_SECRET) == 1


def test_rotated_secret_hides_the_old_value_too(
    make_repo: Callable[..., GitRepo], run_cli: Callable[..., CliResult], store_url: str
) -> None:
    only_env = "\n".join(line for line in USES_SECRETS.splitlines() if "API_TOKEN" not in line)
    repo = make_repo(project({"prefect.yaml": only_env + "\n"}))
    store = ("--store", store_url)
    first = run_cli(*store, str(repo.path), env={"DB_PASSWORD": ENV_SECRET})
    assert first.code == 0, first.output

    rotated = run_cli("--dry-run", *store, str(repo.path), env={"DB_PASSWORD": ROTATED_SECRET})
    assert rotated.code == 0, rotated.output
    assert_hidden(rotated.output, ENV_SECRET, ROTATED_SECRET)
    # The old value is hidden whole: which part of it was the secret is no longer known.
    assert (
        '~ job_variables.env.DB_DSN = "(sensitive value)" -> '
        '"postgresql://etl:(sensitive value)@db.invalid/etl"' in rotated.stdout
    )


def test_secrets_in_error_messages_are_masked(
    make_repo: Callable[..., GitRepo], run_cli: Callable[..., CliResult], store_url: str
) -> None:
    repo = make_repo(
        project(
            {
                "prefect.yaml": """\
                deployments:
                  - name: nightly
                    entrypoint: flows/etl.py:ingest
                    parameters: {days: "{{ $DB_PASSWORD }}"}
                    work_pool:
                      name: etl
                      job_variables:
                        env:
                          DB: ["{{ $DB_PASSWORD }}"]
                """
            }
        )
    )
    for result in run_many(
        run_cli,
        ["--dry-run", "--store", store_url, str(repo.path)],
        ["--store", store_url, str(repo.path)],
        env={"DB_PASSWORD": ENV_SECRET},
    ):
        assert_refused(
            result,
            "error: parameter days: ",
            'error: job variable "env.DB" must be a string or null, got ["(sensitive value)"]',
        )
        assert_hidden(result.output, ENV_SECRET)
