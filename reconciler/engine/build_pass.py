"""Run the build and push steps of a plan (apply only: a dry-run never gets here).

Stage between plan and apply. Each distinct step sequence runs once, however many deployments
share it (a top-level `build:` serves every deployment of its file). A step whose inputs are
unchanged since it last ran is not run again: its recorded outputs are used. The inputs are
its rendered keyword arguments, plus, for a Docker build, the content of its build context (the
tag `build_docker_image` derives from it), plus, for any other step, the commit (a shell step
may read anything in the repository). Results are recorded as each step finishes, so a failure
later keeps what already succeeded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.core.masking import Masker
from reconciler.desired.build import BuildPlan, DraftKey
from reconciler.model.resources import canonical_json
from reconciler.plan.model import PlannedStep
from reconciler.prefect_rules.templating import TemplateError
from reconciler.steps.context import StepContext
from reconciler.steps.runner import TemplateValues, merge_output, render_inputs, run_step
from reconciler.steps.spec import PlacedStep
from reconciler.store.base import Store

# Prefect's Docker steps by their exact names: a step of the user's own package that happens to
# be called `build_docker_image` is hashed like any other (with the commit).
_DOCKER_BUILD = "prefect_docker.deployments.steps.build_docker_image"
_DOCKER_STEPS = frozenset({_DOCKER_BUILD, "prefect_docker.deployments.steps.push_docker_image"})


@dataclass(frozen=True)
class StepRecord:
    """What happened to one step: `ran`, or `unchanged` (its recorded outputs were used)."""

    file: str
    name: str
    id: str | None
    status: str
    deployments: tuple[str, ...]


@dataclass(frozen=True)
class StepRun:
    outputs: dict[DraftKey, dict[str, Any]]
    records: list[StepRecord]


def run_build_steps(
    plans: Sequence[BuildPlan],
    checkouts: Mapping[str, Path],
    commits: Mapping[str, str | None],
    store: Store,
    *,
    environ: Mapping[str, str],
    values: TemplateValues,
    masker: Masker,
    write: Callable[[str], None] | None,
    quiet: bool,
    allow_install: bool = False,
) -> StepRun:
    """Run (or reuse) the steps of every plan; returns each deployment's step outputs.
    `checkouts` maps a repository to the directory holding its files at the planned commit."""
    outputs: dict[DraftKey, dict[str, Any]] = {}
    records: list[StepRecord] = []
    for (repo, _, _), members in _groups(plans).items():
        first = members[0]
        context = StepContext(
            cwd=checkouts[repo] / first.base_dir,
            env=dict(environ),
            masker=masker,
            write=write,
            quiet=quiet,
        )
        result = _run_sequence(
            first, context, store, values, commits.get(repo), allow_install, records, members
        )
        for member in members:
            outputs[member.draft] = result
    return StepRun(outputs, records)


def preview_build_steps(
    plans: Sequence[BuildPlan],
    checkouts: Mapping[str, Path],
    commits: Mapping[str, str | None],
    store: Store,
    *,
    environ: Mapping[str, str],
    values: TemplateValues,
) -> tuple[list[PlannedStep], dict[DraftKey, dict[str, Any]]]:
    """What `run_build_steps` would do, without running anything: for the plan of a dry-run.
    A recorded result makes a step `unchanged` and gives its outputs to the next step; after
    the first step that would run, the rest would run too (their inputs come from it). Returns
    the steps, and the outputs of deployments whose every step is unchanged (so their plan can
    show real values instead of `(known after build)`)."""
    planned: list[PlannedStep] = []
    known: dict[DraftKey, dict[str, Any]] = {}
    for (repo, file, _), members in _groups(plans).items():
        first = members[0]
        context = StepContext(cwd=checkouts[repo] / first.base_dir, env=dict(environ))
        names = tuple(sorted(m.deployment for m in members))
        accumulated: dict[str, Any] = {}
        running = False
        for placed in first.steps:
            step = placed.step
            digest = (
                None
                if running
                else _input_hash(placed, accumulated, values, context, commits.get(repo))
            )
            recorded = store.step_result(digest) if digest else None
            running = recorded is None
            if recorded is not None:
                merge_output(accumulated, step, recorded)
            status = "run" if running else "unchanged"
            planned.append(PlannedStep(file, step.name, step.id, status, names))
        if not running:
            for member in members:
                known[member.draft] = dict(accumulated)
    return planned, known


def _groups(plans: Sequence[BuildPlan]) -> dict[tuple[str, str, tuple[Any, ...]], list[BuildPlan]]:
    """Plans sharing one sequence of steps (the same places in the same file) run it once."""
    groups: dict[tuple[str, str, tuple[Any, ...]], list[BuildPlan]] = {}
    for plan in plans:
        repo, file, _ = plan.draft
        groups.setdefault((repo, file, tuple(p.path for p in plan.steps)), []).append(plan)
    return groups


def _run_sequence(
    plan: BuildPlan,
    context: StepContext,
    store: Store,
    values: TemplateValues,
    commit: str | None,
    allow_install: bool,
    records: list[StepRecord],
    members: list[BuildPlan],
) -> dict[str, Any]:
    assert plan.document is not None
    accumulated: dict[str, Any] = {}
    names = tuple(sorted(m.deployment for m in members))
    for placed in plan.steps:
        step = placed.step
        digest = _input_hash(placed, accumulated, values, context, commit)
        recorded = store.step_result(digest) if digest else None
        if recorded is not None:
            status = "unchanged"
            output: dict[str, Any] | None = recorded
            context.open_output(step.id or step.short_name).note(
                f"= {step.name}: inputs unchanged, not run again"
            )
        else:
            status = "ran"
            output = run_step(
                placed,
                plan.document,
                context,
                values=values,
                outputs=accumulated,
                allow_install=allow_install,
            )
            if digest:
                with store.transaction() as tx:
                    tx.record_step_result(digest, step.name, output or {})
        merge_output(accumulated, step, output)
        records.append(StepRecord(plan.draft[1], step.name, step.id, status, names))
    return accumulated


def _input_hash(
    placed: PlacedStep,
    upstream: Mapping[str, Any],
    values: TemplateValues,
    context: StepContext,
    commit: str | None,
) -> str | None:
    """The hash deciding whether the step may be skipped; None when it must run (its inputs
    cannot be rendered yet: running it reports why)."""
    step = placed.step
    try:
        inputs = render_inputs(step, upstream, values, context.env)
    except TemplateError:
        return None
    identity: dict[str, Any] = {"step": step.name, "inputs": inputs}
    if step.name == _DOCKER_BUILD:
        tag = _docker_context_tag(inputs, context.cwd)
        if tag is None:
            return None
        identity["context"] = tag
    elif step.name not in _DOCKER_STEPS:
        if commit is None:
            return None  # a working copy has no commit to pin a shell step's inputs to
        identity["commit"] = commit
    return hashlib.sha256(canonical_json(identity).encode()).hexdigest()


def _docker_context_tag(inputs: Mapping[str, Any], cwd: Path) -> str | None:
    from reconciler.steps import docker

    context_dir = Path(inputs.get("path") or cwd)
    dockerfile = str(inputs.get("dockerfile") or "Dockerfile")
    try:
        if dockerfile == "auto":
            base = inputs.get("base_image") or docker.DEFAULT_BASE_IMAGE
            text = docker.render_auto_dockerfile(context_dir, str(base))
        else:
            text = (context_dir / dockerfile).read_text(encoding="utf-8", errors="surrogateescape")
        options = {k: v for k, v in inputs.items() if k not in ("image_name", "dockerfile")}
        return docker.build_tag(context_dir, dockerfile, text, options)
    except Exception:  # the build itself will report what is wrong with its context
        return None
