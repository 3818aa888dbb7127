"""`reconcile import` on the real prefect.yaml files of ../shared/corpus (issue 19, item 2).

Every corpus file our plan accepts is built as in test_prefect_corpus.py (stub flows, a pools
file, an environment, variables and blocks), its objects taken as the store would hold them
after an apply, imported, and the imported files planned against that state in the same
repository: the plan must have no change and no error. Files whose deployments hold values
only a build step makes are left out (their stored specs exist only after the build ran).

A file whose import had to hide a text it held in clear (a credential-looking key) is planned
with those placeholders' environment set to the hidden values; its plan may then mark the
job variable sensitive, which is the only difference allowed (and counted)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from reconciler.desired.build import BuildOptions, RepoInput, build_desired
from reconciler.model.observed import ObservedState
from reconciler.model.resources import UNKNOWN_MARKER_KEY, Resource
from reconciler.onboard.export import export_state
from reconciler.plan.planner import PlanOptions, make_plan
from reconciler.sources.base import MemorySnapshot
from reconciler.store import open_store
from tests.conftest import CliResult, GitRepo
from tests.corpus.test_prefect_corpus import (
    CORPUS_FILES,
    DELIBERATE,
    EXPECTED,
    REPO_ID,
    corpus_repository,
    corpus_text,
    deployable,
    errors_of,
)
from tests.e2e.test_import_round_trip import round_trip

YAML_FILES = ("prefect.yaml", "work-pools.yaml")


def _applied(resources: tuple[Resource, ...]) -> dict[Any, Resource]:
    return {r.ident: r for r in resources}


def _texts(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _texts(item)
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item)


def _accepted(name: str) -> bool:
    """Files Prefect deploys whole and we accept (test_prefect_corpus.py checks that)."""
    expected = EXPECTED[name]
    difference = DELIBERATE.get(name)
    return (
        expected["yaml"] == "ok"
        and bool(expected["valid"])
        and bool(expected["deployments"])
        and all(deployable(r) for r in expected["deployments"])
        and (difference is None or difference.refusal is None)
    )


IMPORTABLE = [name for name in CORPUS_FILES if _accepted(name)]


def test_most_of_the_corpus_is_imported() -> None:
    assert len(IMPORTABLE) > 150


@pytest.mark.parametrize("name", IMPORTABLE)
def test_import_of_corpus_file_plans_no_changes(name: str) -> None:
    repository = corpus_repository(corpus_text(name), name)
    built = repository.build()
    if errors_of(built) or built.desired is None or not built.desired.resources:
        pytest.skip("our plan refuses this file or it declares nothing: nothing to import")
    resources = built.desired.resources
    if any(UNKNOWN_MARKER_KEY in r.spec_json for r in resources):
        pytest.skip("values only a build step makes: the store holds them only after a build")
    observed = ObservedState(
        revision=1,
        resources=_applied(resources),
        variables=repository.observed.variables,
        blocks=repository.observed.blocks,
    )

    result = export_state(observed, "sqlite:///corpus.db")

    written = "".join([*result.prefect_files.values(), result.pools_yaml or ""])
    for secret in (t for value in observed.blocks.values() for t in _texts(value)):
        assert secret not in written
    files = {p: c for p, c in repository.files.items() if p.rsplit("/", 1)[-1] not in YAML_FILES}
    files.update(result.prefect_files)
    if result.pools_yaml is not None:
        files["work-pools.yaml"] = result.pools_yaml
    environ = dict(repository.environ)
    for needed in result.needed:  # the hidden texts, given back as the user would
        if needed.kind == "env" and needed.name not in environ:
            environ[needed.name] = _hidden_value(observed, needed.name)
    again = build_desired(
        [RepoInput(MemorySnapshot(files, repo_id=REPO_ID))],
        observed,
        BuildOptions(environ=environ),
    )
    assert not errors_of(again), [d.message for d in errors_of(again)]
    assert again.desired is not None
    plan = make_plan(again.desired, observed, PlanOptions())
    unexpected = [
        (c.action.value, c.key, [d.to_json() for d in c.diffs])
        for c in plan.changes
        if any(d.path[:1] != ("sensitive_job_variables",) for d in c.diffs) or not c.diffs
    ]
    assert unexpected == [], json.dumps(unexpected, indent=1)[:4000]


def _hidden_value(observed: ObservedState, env_name: str) -> str:
    """The clear text an `{{ $NAME }}` placeholder replaced: the value under a key that
    becomes NAME (or NAME_SECRET) in some deployment's job variables, parameters or steps."""
    for resource in observed.resources.values():
        found = _find(resource.view(), env_name)
        if found is not None:
            return found
    raise AssertionError(f"no hidden value for {env_name}")


def _find(value: Any, env_name: str) -> str | None:
    if isinstance(value, dict):
        for key, item in value.items():
            normal = "".join(c if c.isalnum() else "_" for c in str(key)).upper().strip("_")
            if isinstance(item, str) and env_name in (normal, f"{normal}_SECRET"):
                return item
            found = _find(item, env_name)
            if found is not None:
                return found
    elif isinstance(value, list):
        for item in value:
            found = _find(item, env_name)
            if found is not None:
                return found
    return None


CLI_SAMPLE = (
    "OlegPodlipalin__kedro_prefect__prefect.yml.yaml",  # anchors, merge keys, pool from $VAR
    "genomehubs__data__flows__prefect.yaml",  # 34 deployments, blocks and variables
    "Bishop0272__TestAlloc__prefect.yaml",  # CRLF line endings
)


@pytest.mark.e2e
@pytest.mark.parametrize("name", CLI_SAMPLE)
def test_import_round_trip_through_the_cli(
    name: str,
    make_repo: Callable[..., GitRepo],
    run_cli: Callable[..., CliResult],
    store_url: str,
) -> None:
    """Applied to a fresh store by the CLI, imported into a new repository, adopted: then
    No changes (tests/e2e/test_import_round_trip.py)."""
    repository = corpus_repository(corpus_text(name), name)
    original = make_repo(repository.files)
    store = open_store(store_url)
    try:
        with store.transaction() as tx:
            for variable, value in repository.observed.variables.items():
                tx.set_variable(variable, value)
            for (slug, block), data in repository.observed.blocks.items():
                tx.set_block(slug, block, data)
    finally:
        store.close()
    applied = run_cli("--store", store_url, str(original.path), env=repository.environ)
    assert applied.code == 0, applied.output
    round_trip(original, make_repo, run_cli, store_url, env=repository.environ)
