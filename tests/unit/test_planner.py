"""The planner (reconciler.plan.planner.make_plan) on desired and observed states built by hand.

make_plan is pure, so every test writes its inputs as values: Resources, RepoScopes, an
ObservedState. The rules under test are in the planner's docstring (ownership, prune, adoption,
implicit queues, the empty-owner refusal, dangling references).
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from reconciler.core.diagnostics import Diagnostic, warning
from reconciler.desired.state import DesiredState, RepoScope
from reconciler.model.observed import ObservedState
from reconciler.model.resources import Kind, Owner, Resource
from reconciler.plan.model import Action, Change, Plan, SourceInfo
from reconciler.plan.planner import PlanOptions, make_plan

REPO = "github.com/acme/flows"
OTHER_REPO = "github.com/acme/other"
SHA = "0123456789abcdef0123456789abcdef01234567"
FILE = Owner(REPO, "prefect.yaml")
POOLS = Owner(REPO, "work-pools.yaml")
TEAM_FILE = Owner(REPO, "teams/data/prefect.yaml")
ELSEWHERE = Owner(OTHER_REPO, "prefect.yaml")


# --- building inputs ---------------------------------------------------------------------------


def pool(name: str, owner: Owner | None = POOLS, **spec: Any) -> Resource:
    return Resource.of(Kind.WORK_POOL, name, {"name": name, "type": "process", **spec}, owner)


def queue(pool_name: str, name: str, owner: Owner | None = POOLS, **spec: Any) -> Resource:
    body = {"pool": pool_name, "name": name, "priority": 1, **spec}
    return Resource.of(Kind.WORK_QUEUE, f"{pool_name}/{name}", body, owner)


def deployment(
    key: str, owner: Owner | None = FILE, pool: str = "etl", queue: str = "default", **spec: Any
) -> Resource:
    flow, name = key.split("/")
    body = {
        "name": name,
        "flow_name": flow,
        "entrypoint": "flows/etl.py:main",
        "work_pool_name": pool,
        "work_queue_name": queue,
        **spec,
    }
    return Resource.of(Kind.DEPLOYMENT, key, body, owner)


def scope(
    repo: str = REPO,
    files: tuple[str, ...] = ("prefect.yaml", "work-pools.yaml"),
    glob: str = "prefect.yaml",
) -> RepoScope:
    return RepoScope(repo, f"/src/{repo.rsplit('/', 1)[-1]}", "main", SHA, files, glob)


def desired(
    *resources: Resource,
    scopes: tuple[RepoScope, ...] | None = None,
    implicit: tuple[Resource, ...] = (),
    diagnostics: tuple[Diagnostic, ...] = (),
) -> DesiredState:
    everything = (*resources, *implicit)
    return DesiredState(
        everything,
        scopes if scopes is not None else (scope(),),
        diagnostics,
        frozenset(r.ident for r in implicit),
    )


def observed(*resources: Resource, revision: int = 7) -> ObservedState:
    return ObservedState(revision, {r.ident: r for r in resources})


def plan(
    want: DesiredState,
    have: ObservedState,
    *,
    prune: bool = True,
    allow_empty: bool = False,
    adopt: bool = False,
) -> Plan:
    return make_plan(want, have, PlanOptions(prune=prune, allow_empty=allow_empty, adopt=adopt))


def actions(result: Plan) -> list[tuple[str, str, str]]:
    return [(c.action.value, c.kind.label, c.key) for c in result.changes]


def errors(result: Plan) -> list[str]:
    return [d.message for d in result.diagnostics if d.is_error]


def only_change(result: Plan) -> Change:
    assert len(result.changes) == 1, actions(result)
    return result.changes[0]


# --- create, update, unchanged -----------------------------------------------------------------


def test_a_fresh_store_gets_every_object_created() -> None:
    wanted = [pool("etl"), queue("etl", "default"), deployment("ingest/nightly")]

    result = plan(desired(*wanted), observed(revision=0))

    assert actions(result) == [
        ("create", "work-pool", "etl"),
        ("create", "work-queue", "etl/default"),
        ("create", "deployment", "ingest/nightly"),
    ]
    assert [c.desired for c in result.changes] == wanted
    assert all(c.observed is None and c.diffs == () for c in result.changes)
    assert result.summary.to_json() == {"add": 3, "change": 0, "destroy": 0, "adopt": 0}
    assert (result.unchanged, result.observed_revision, errors(result)) == (0, 0, [])


def test_an_update_lists_each_changed_field_in_path_order() -> None:
    before = deployment(
        "ingest/nightly",
        description="old",
        parameters={"days": 1, "region": "emea"},
        tags=["orders"],
        schedules=[{"cron": "0 2 * * *", "timezone": "UTC"}],
    )
    after = deployment(
        "ingest/nightly",
        parameters={"days": 7, "region": "emea", "dry_run": True},
        tags=["orders", "nightly"],
        schedules=[{"cron": "0 3 * * *", "timezone": "UTC"}],
    )

    change = only_change(plan(desired(pool("etl"), after), observed(pool("etl"), before)))

    assert (change.action, change.desired, change.observed) == (Action.UPDATE, after, before)
    assert [d.to_json() for d in change.diffs] == [
        {
            "path": ["description"],
            "before": "old",
            "after": None,
            "before_absent": False,
            "after_absent": True,
        },
        {
            "path": ["parameters", "days"],
            "before": 1,
            "after": 7,
            "before_absent": False,
            "after_absent": False,
        },
        {
            "path": ["parameters", "dry_run"],
            "before": None,
            "after": True,
            "before_absent": True,
            "after_absent": False,
        },
        {
            "path": ["schedules", 0, "cron"],
            "before": "0 2 * * *",
            "after": "0 3 * * *",
            "before_absent": False,
            "after_absent": False,
        },
        {
            "path": ["tags"],
            "before": ["orders"],
            "after": ["orders", "nightly"],
            "before_absent": False,
            "after_absent": False,
        },
    ]


@pytest.mark.parametrize(
    ("before", "after", "diff"),
    [
        (1, True, (("parameters", "flag"), "1", "true")),
        (0, False, (("parameters", "flag"), "0", "false")),
        (1, 1.0, (("parameters", "flag"), "1", "1.0")),
        ([1], [True], (("parameters", "flag", 0), "1", "true")),
    ],
    ids=["1->true", "0->false", "1->1.0", "[1]->[true]"],
)
def test_a_value_that_changes_json_type_is_a_field_diff(
    before: Any, after: Any, diff: tuple[tuple[str | int, ...], str, str]
) -> None:
    """Python holds 1 == 1.0 == True; the stored JSON does not, and neither does the plan."""
    old = deployment("f/d", parameters={"flag": before})
    new = deployment("f/d", parameters={"flag": after})

    change = only_change(plan(desired(new), observed(old)))

    assert [(d.path, d.before_json, d.after_json) for d in change.diffs] == [diff]


def test_unchanged_objects_are_counted_not_listed() -> None:
    same = [pool("etl"), queue("etl", "default"), deployment("f/a"), deployment("f/b")]

    result = plan(desired(*same), observed(*same))

    assert result.changes == ()
    assert not result.has_changes
    assert result.unchanged == 4


def test_an_object_moved_to_another_file_is_an_update_of_its_owner_only() -> None:
    moved = deployment("f/d", owner=TEAM_FILE)
    scopes = (scope(files=("prefect.yaml", "teams/data/prefect.yaml")),)

    result = plan(
        desired(moved, deployment("f/stays"), scopes=scopes),
        observed(deployment("f/d", owner=FILE), deployment("f/stays")),
    )

    change = only_change(result)
    assert (change.action, change.diffs, change.owner_changed) == (Action.UPDATE, (), True)
    assert (change.owner, change.previous_owner) == (TEAM_FILE, FILE)
    assert errors(result) == []


# --- order -------------------------------------------------------------------------------------


def test_changes_are_sorted_by_kind_then_key_whatever_the_input_order() -> None:
    creates = [deployment("b/x"), queue("etl", "z"), pool("zeta"), deployment("a/y"), pool("etl")]
    updates = [pool("alpha", concurrency_limit=2), deployment("c/c", paused=True)]
    deletes = [queue("etl", "old"), deployment("a/gone")]
    before = [pool("alpha", concurrency_limit=1), deployment("c/c", paused=False), *deletes]
    expected = [
        ("update", "work-pool", "alpha"),
        ("create", "work-pool", "etl"),
        ("create", "work-pool", "zeta"),
        ("delete", "work-queue", "etl/old"),
        ("create", "work-queue", "etl/z"),
        ("delete", "deployment", "a/gone"),
        ("create", "deployment", "a/y"),
        ("create", "deployment", "b/x"),
        ("update", "deployment", "c/c"),
    ]

    for wanted in itertools.islice(itertools.permutations([*creates, *updates]), 0, 5040, 997):
        for have in (before, before[::-1]):
            result = plan(desired(*wanted), observed(*have))
            assert actions(result) == expected
            assert errors(result) == []


def test_the_same_inputs_give_an_equal_plan() -> None:
    want = desired(pool("etl", concurrency_limit=3), deployment("f/new"))
    have = observed(pool("etl", concurrency_limit=2), deployment("f/old"))

    assert plan(want, have, allow_empty=True) == plan(want, have, allow_empty=True)


# --- prune and ownership -----------------------------------------------------------------------


def test_prune_deletes_objects_of_files_this_run_read_and_nothing_else() -> None:
    keep = deployment("f/keep")
    mine = deployment("f/gone")
    hand_made = deployment("f/by-hand", owner=None)
    other_repo = deployment("f/theirs", owner=ELSEWHERE)

    result = plan(desired(keep), observed(keep, mine, hand_made, other_repo))

    change = only_change(result)
    assert (change.action, change.key, change.desired, change.observed) == (
        Action.DELETE,
        "f/gone",
        None,
        mine,
    )
    assert change.owner == FILE
    assert errors(result) == []


def test_prune_follows_the_file_glob_of_the_run() -> None:
    """Only owner files matching the run's glob (or the pools file) are in scope: running with
    `--prefect-file 'deploy/*.yaml'` never deletes what `prefect.yaml` files made."""
    deploy_file = Owner(REPO, "deploy/prod.yaml")
    run = scope(files=("deploy/prod.yaml", "deploy/dev.yaml"), glob="deploy/*.yaml")
    have = observed(
        deployment("f/keep", owner=deploy_file),
        deployment("f/dev-gone", owner=Owner(REPO, "deploy/dev.yaml")),
        deployment("f/root", owner=FILE),
        deployment("f/team", owner=TEAM_FILE),
        pool("old", owner=Owner(REPO, "infra/work-pools.yaml")),
    )

    result = plan(
        desired(deployment("f/keep", owner=deploy_file), scopes=(run,)), have, allow_empty=True
    )

    assert actions(result) == [
        ("delete", "work-pool", "old"),
        ("delete", "deployment", "f/dev-gone"),
    ]


def test_a_bare_glob_covers_files_of_that_name_in_every_directory() -> None:
    run = scope(files=("prefect.yaml", "teams/data/prefect.yaml"))
    have = observed(deployment("f/keep"), deployment("f/team-gone", owner=TEAM_FILE))

    result = plan(desired(deployment("f/keep"), scopes=(run,)), have, allow_empty=True)

    assert actions(result) == [("delete", "deployment", "f/team-gone")]


def test_objects_of_a_file_deleted_from_the_repository_are_deleted_with_allow_empty() -> None:
    """The file is gone from the tree, so it is not among the files read, but its name still
    matches the glob: its objects are in scope."""
    run = scope(files=("prefect.yaml",))
    gone = [deployment("f/a", owner=TEAM_FILE), deployment("f/b", owner=TEAM_FILE)]

    result = plan(
        desired(deployment("f/keep"), scopes=(run,)),
        observed(deployment("f/keep"), *gone),
        allow_empty=True,
    )

    assert actions(result) == [("delete", "deployment", "f/a"), ("delete", "deployment", "f/b")]
    assert errors(result) == []


def test_deleting_every_object_of_a_file_is_refused_without_allow_empty() -> None:
    run = scope(files=("prefect.yaml",))
    gone = [deployment(f"f/d{i}", owner=TEAM_FILE) for i in range(7)]

    result = plan(
        desired(deployment("f/keep"), scopes=(run,)), observed(deployment("f/keep"), *gone)
    )

    assert len(result.changes) == 7, "the plan still shows what would be deleted"
    [problem] = [d for d in result.diagnostics if d.is_error]
    assert str(TEAM_FILE) in problem.message and "(7: " in problem.message
    assert "deployment f/d0" in problem.message and "and 2 more" in problem.message
    assert problem.hint is not None and "--allow-empty" in problem.hint


def test_an_owner_that_keeps_one_object_may_lose_the_others() -> None:
    have = observed(deployment("f/keep"), deployment("f/gone-1"), deployment("f/gone-2"))

    result = plan(desired(deployment("f/keep")), have)

    assert [c.key for c in result.changes] == ["f/gone-1", "f/gone-2"]
    assert errors(result) == []


def test_an_owner_emptied_by_a_failed_read_looks_like_this_and_is_refused() -> None:
    have = observed(pool("etl"), queue("etl", "default"), deployment("f/a"), deployment("f/b"))

    result = plan(desired(pool("etl"), queue("etl", "default")), have)

    assert [c.action for c in result.changes] == [Action.DELETE, Action.DELETE]
    assert len(errors(result)) == 1 and str(FILE) in errors(result)[0]


def test_no_prune_deletes_nothing_and_refuses_nothing() -> None:
    have = observed(pool("etl"), deployment("f/a"), deployment("f/b"))

    result = plan(desired(pool("etl")), have, prune=False)

    assert result.changes == ()
    assert errors(result) == []
    assert result.unchanged == 1


# --- hand-made objects and other repositories --------------------------------------------------


def test_a_hand_made_object_that_a_file_declares_is_adopted() -> None:
    by_hand = pool("etl", owner=None, concurrency_limit=2)
    declared = pool("etl", concurrency_limit=4)

    change = only_change(plan(desired(declared), observed(by_hand)))

    assert (change.action, change.owner, change.previous_owner) == (Action.ADOPT, POOLS, None)
    assert [(d.path, d.before, d.after) for d in change.diffs] == [(("concurrency_limit",), 2, 4)]


def test_a_hand_made_object_identical_to_its_declaration_is_still_adopted() -> None:
    change = only_change(plan(desired(pool("etl")), observed(pool("etl", owner=None))))

    assert (change.action, change.diffs, change.owner_changed) == (Action.ADOPT, (), True)


def test_hand_made_objects_are_never_deleted() -> None:
    hand_made = [pool("manual", owner=None), deployment("f/manual", owner=None, pool="manual")]

    result = plan(desired(pool("etl")), observed(pool("etl"), *hand_made), allow_empty=True)

    assert result.changes == ()
    assert errors(result) == []


def test_declaring_an_object_of_a_repository_outside_the_run_is_an_error() -> None:
    theirs = deployment("f/shared", owner=ELSEWHERE)
    ours = deployment("f/shared", parameters={"x": 1})

    result = plan(desired(ours, deployment("f/new")), observed(theirs))

    assert actions(result) == [("create", "deployment", "f/new")]
    [message] = errors(result)
    assert '"f/shared"' in message and str(ELSEWHERE) in message and str(FILE) in message


def test_objects_of_a_repository_in_the_same_run_move_between_repositories() -> None:
    both = (scope(), scope(OTHER_REPO))
    moved = deployment("f/d", owner=ELSEWHERE)

    result = plan(
        desired(moved, deployment("f/keep"), scopes=both),
        observed(deployment("f/d"), deployment("f/keep")),
    )

    change = only_change(result)
    assert (change.action, change.owner, change.previous_owner) == (Action.UPDATE, ELSEWHERE, FILE)
    assert errors(result) == []


# --- implicit queues ---------------------------------------------------------------------------


def test_a_missing_implicit_queue_is_created() -> None:
    implicit = queue("etl", "adhoc", owner=FILE, priority=2)
    want = desired(pool("etl"), deployment("f/d", queue="adhoc"), implicit=(implicit,))

    result = plan(want, observed(pool("etl")))

    assert actions(result) == [
        ("create", "work-queue", "etl/adhoc"),
        ("create", "deployment", "f/d"),
    ]


@pytest.mark.parametrize(
    "present_owner", [None, FILE, ELSEWHERE, POOLS], ids=["by-hand", "same", "other-repo", "pools"]
)
def test_an_implicit_queue_that_exists_is_left_alone(present_owner: Owner | None) -> None:
    present = queue("etl", "adhoc", owner=present_owner, priority=5, concurrency_limit=1)
    implicit = queue("etl", "adhoc", owner=FILE, priority=2)
    want = desired(pool("etl"), deployment("f/d", queue="adhoc"), implicit=(implicit,))

    result = plan(want, observed(pool("etl"), present, deployment("f/d", queue="adhoc")))

    assert result.changes == ()
    assert errors(result) == []
    assert result.unchanged == 3


@pytest.mark.parametrize("made_by", [FILE, POOLS], ids=["implicit", "undeclared-since"])
def test_a_queue_a_declared_deployment_runs_on_is_never_pruned(made_by: Owner) -> None:
    """The desired state need not list a queue that already exists (an implicit queue made by
    an earlier run, or one since removed from the pools file); prune must not take it away from
    the deployment that still runs on it: Prefect would only create it again."""
    earlier = queue("etl", "adhoc", owner=made_by, priority=2)
    uses_it = deployment("f/d", queue="adhoc")

    result = plan(desired(pool("etl"), uses_it), observed(pool("etl"), earlier, uses_it))

    assert result.changes == ()
    assert errors(result) == []
    assert result.unchanged == 3


def test_an_implicit_queue_no_deployment_uses_any_more_is_pruned() -> None:
    earlier = queue("etl", "adhoc", owner=FILE, priority=2)
    moved = deployment("f/d", queue="default")

    result = plan(
        desired(pool("etl"), moved),
        observed(pool("etl"), earlier, deployment("f/d", queue="adhoc")),
    )

    assert actions(result) == [
        ("delete", "work-queue", "etl/adhoc"),
        ("update", "deployment", "f/d"),
    ]
    assert errors(result) == []


# --- dangling references -----------------------------------------------------------------------


def test_deleting_a_pool_a_declared_deployment_uses_is_an_error() -> None:
    uses_pool = deployment("f/d", pool="old")

    result = plan(
        desired(pool("etl"), uses_pool),
        observed(pool("etl"), pool("old"), uses_pool),
    )

    assert actions(result) == [("delete", "work-pool", "old")]
    [message] = errors(result)
    assert message.startswith('work-pool "old" would be deleted but deployment "f/d"')
    assert str(FILE) in message
    [refusal] = [d for d in result.diagnostics if d.is_error]
    assert str(refusal.location) == "/src/flows/work-pools.yaml", "where the pool was removed"


def test_deleting_a_queue_a_hand_made_deployment_uses_is_an_error() -> None:
    by_hand = deployment("manual/run", owner=None, queue="backfill")

    result = plan(
        desired(pool("etl"), queue("etl", "default"), deployment("f/keep")),
        observed(
            pool("etl"),
            queue("etl", "default"),
            queue("etl", "backfill"),
            deployment("f/keep"),
            by_hand,
        ),
    )

    assert actions(result) == [("delete", "work-queue", "etl/backfill")]
    [message] = errors(result)
    assert '"etl/backfill"' in message and '"manual/run" (made by hand)' in message


def test_deleting_a_pool_together_with_its_deployments_is_fine() -> None:
    result = plan(
        desired(pool("etl"), deployment("f/keep")),
        observed(pool("etl"), pool("old"), deployment("f/keep"), deployment("f/old", pool="old")),
    )

    assert actions(result) == [("delete", "work-pool", "old"), ("delete", "deployment", "f/old")]
    assert errors(result) == []


def test_a_deployment_moving_off_a_deleted_pool_is_fine() -> None:
    result = plan(
        desired(pool("etl"), deployment("f/d", pool="etl")),
        observed(pool("etl"), pool("old"), deployment("f/d", pool="old")),
    )

    assert actions(result) == [("delete", "work-pool", "old"), ("update", "deployment", "f/d")]
    assert errors(result) == []


# --- what the plan carries ---------------------------------------------------------------------


def test_the_plan_carries_the_sources_diagnostics_and_observed_revision() -> None:
    note = warning("tags is a string")
    runs = (scope(), scope(OTHER_REPO, files=()))

    result = plan(desired(scopes=runs, diagnostics=(note,)), observed(revision=41))

    assert result.sources == (
        SourceInfo(REPO, "/src/flows", "main", SHA, ("prefect.yaml", "work-pools.yaml")),
        SourceInfo(OTHER_REPO, "/src/other", "main", SHA, ()),
    )
    assert result.diagnostics == (note,)
    assert result.observed_revision == 41


# --- scope -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("glob", "file", "owned"),
    [
        ("prefect.yaml", "prefect.yaml", True),
        ("prefect.yaml", "teams/data/prefect.yaml", True),
        ("prefect.yaml", "prefect.yml", False),
        ("prefect.yaml", "work-pools.yaml", True),
        ("prefect.yaml", "infra/work-pools.yaml", True),
        ("deploy/*.yaml", "deploy/prod.yaml", True),
        ("deploy/*.yaml", "prefect.yaml", False),
        ("deploy/*.yaml", "other/deploy/prod.yaml", False),
        ("*.prefect.yaml", "ops/etl.prefect.yaml", True),
    ],
)
def test_a_scope_owns_the_files_its_glob_or_the_pools_file_name_matches(
    glob: str, file: str, owned: bool
) -> None:
    assert scope(glob=glob, files=()).owns_file(file) is owned


def test_in_scope_needs_the_same_repository_and_an_owner() -> None:
    want = desired()

    assert want.in_scope(FILE)
    assert not want.in_scope(ELSEWHERE)
    assert not want.in_scope(None)


# --- adoption (reconcile adopt, --adopt) ------------------------------------------------------


def test_adopt_takes_over_objects_of_another_repository_and_shows_their_diffs() -> None:
    same = deployment("f/same")
    theirs_same = deployment("f/same", owner=ELSEWHERE)
    differs = pool("etl", concurrency_limit=2)
    theirs_differs = pool("etl", owner=ELSEWHERE, concurrency_limit=5)

    result = plan(desired(same, differs), observed(theirs_same, theirs_differs), adopt=True)

    assert errors(result) == []
    assert actions(result) == [("adopt", "work-pool", "etl"), ("adopt", "deployment", "f/same")]
    pool_change, deployment_change = result.changes
    assert pool_change.previous_owner == ELSEWHERE and pool_change.owner == POOLS
    assert [d.path for d in pool_change.diffs] == [("concurrency_limit",)]
    assert deployment_change.diffs == ()
    assert result.summary.to_json() == {"add": 0, "change": 0, "destroy": 0, "adopt": 2}


def test_without_adopt_another_repositorys_object_stays_an_error() -> None:
    result = plan(desired(deployment("f/d")), observed(deployment("f/d", owner=ELSEWHERE)))

    assert result.changes == ()
    [message] = errors(result)
    assert "reconcile adopt" in message or "belongs to" in message


def test_adopt_never_deletes_objects_the_files_do_not_declare() -> None:
    """Adoption is by name: what the files do not declare stays with its owner."""
    kept = deployment("f/theirs", owner=ELSEWHERE)
    hand_made = deployment("f/manual", owner=None)

    result = plan(desired(pool("etl")), observed(pool("etl"), kept, hand_made), adopt=True)

    assert result.changes == ()
    assert errors(result) == []


def test_adopt_takes_an_implicit_queue_of_another_repository_over_as_it_is() -> None:
    """A queue another repository's deployment made by naming it goes with the deployment
    that now names it: adopted, its settings kept (implicit queues are never updated)."""
    present = queue("etl", "adhoc", owner=ELSEWHERE, priority=5, concurrency_limit=1)
    implicit = queue("etl", "adhoc", owner=FILE, priority=2)
    want = desired(pool("etl"), deployment("f/d", queue="adhoc"), implicit=(implicit,))

    result = plan(
        want, observed(pool("etl"), present, deployment("f/d", queue="adhoc")), adopt=True
    )

    change = only_change(result)
    assert (change.action, change.key, change.diffs) == (Action.ADOPT, "etl/adhoc", ())
    assert change.desired is not None and change.desired.owner == FILE
    assert change.desired.spec == present.spec
    assert errors(result) == []
