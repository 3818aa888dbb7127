"""Emergency overrides of git-owned deployments (`reconcile deployment pause|resume FLOW/NAME`).

Git owns its deployments: a change made beside it is drift, and the daemon reverts it. An
override is the one exception, for stopping a runaway schedule now: it is recorded in the store
(store/overrides.py) and laid over the desired state before every plan (`lay_overrides`,
called by the engine), so the plan keeps the deployment paused, says so in a warning, and
the daemon does not revert it; `reconcile status` lists it. Removing it (`resume`) gives the
deployment back its `paused` of before, and git is the only truth again.

Pausing writes, in one transaction: the deployment paused, and its scheduled runs removed
(as an apply of `paused: true` would).
"""

from __future__ import annotations

import json
from dataclasses import replace

from reconciler.core.diagnostics import warning
from reconciler.core.errors import StaleStateError, UserError
from reconciler.desired.build import BuildResult
from reconciler.model.resources import Kind, Resource
from reconciler.prefect_rules.validation import did_you_mean
from reconciler.store.base import Store
from reconciler.store.overrides import Override, overrides, put_override, remove_override

_ATTEMPTS = 5


def lay_overrides(built: BuildResult, store: Store) -> BuildResult:
    """The desired state with every override applied, and a warning for each."""
    desired = built.desired
    found = {o.deployment: o for o in overrides(store)} if desired is not None else {}
    if desired is None or not found:
        return built
    resources: list[Resource] = []
    notes = []
    for resource in desired.resources:
        override = found.get(resource.key) if resource.kind is Kind.DEPLOYMENT else None
        if override is None:
            resources.append(resource)
            continue
        spec = json.loads(resource.spec_json)
        spec["paused"] = override.paused
        resources.append(
            Resource.of(resource.kind, resource.key, spec, resource.owner, resource.source_commit)
        )
        notes.append(
            warning(
                f"deployment {resource.key} is paused by an operator override (set by "
                f"{override.actor} at {override.at}): an override, not drift; the plan keeps it",
                desired.file_location(resource.owner),
                f"`reconcile deployment resume {resource.key}` removes the override",
            )
        )
    return replace(
        built,
        desired=replace(
            desired, resources=tuple(resources), diagnostics=(*desired.diagnostics, *notes)
        ),
    )


def pause(store: Store, key: str, actor: str) -> str:
    """Pause deployment `key` by an override; the message to show. Raises UserError."""
    if any(o.deployment == key for o in overrides(store)):
        return f"deployment {key} is already paused by an override"
    for _ in range(_ATTEMPTS):
        observed = store.observe()
        resource = observed.resources.get((Kind.DEPLOYMENT, key))
        if resource is None:
            known = [k for kind, k in observed.resources if kind is Kind.DEPLOYMENT]
            raise UserError(
                f"no deployment {key!r}",
                did_you_mean(key, known) or "`reconcile deployment ls` lists them (FLOW/NAME)",
            )
        if resource.owner is None:
            raise UserError(
                f"deployment {key} was made by hand: it needs no override",
                "overrides are for deployments a repository owns; change a hand-made one directly",
            )
        spec = resource.deployment_spec()
        if spec.paused:
            raise UserError(
                f"deployment {key} is paused already (its file says so)",
                "there is no schedule to stop; nothing was changed",
            )
        paused = json.loads(resource.spec_json)
        paused["paused"] = True
        try:
            with store.transaction(expected_revision=observed.revision) as tx:
                tx.put(
                    Resource.of(
                        Kind.DEPLOYMENT, key, paused, resource.owner, resource.source_commit
                    )
                )
                tx.remove_scheduled_runs(key, ())
        except StaleStateError:
            continue
        put_override(store, key, True, False, actor)
        return f"deployment {key} paused by an override; its scheduled runs were removed"
    raise StaleStateError("the store kept changing", "try again")


def resume(store: Store, key: str) -> str:
    """Remove the override of `key`, restoring its `paused` of before. Raises UserError."""
    found: Override | None = next((o for o in overrides(store) if o.deployment == key), None)
    if found is None:
        keys = [o.deployment for o in overrides(store)]
        raise UserError(
            f"deployment {key} has no override",
            did_you_mean(key, keys)
            or (f"overrides: {', '.join(keys)}" if keys else "no deployment has one"),
        )
    for _ in range(_ATTEMPTS):
        observed = store.observe()
        resource = observed.resources.get((Kind.DEPLOYMENT, key))
        try:
            if resource is not None:
                spec = json.loads(resource.spec_json)
                spec["paused"] = found.was_paused
                with store.transaction(expected_revision=observed.revision) as tx:
                    tx.put(
                        Resource.of(
                            Kind.DEPLOYMENT, key, spec, resource.owner, resource.source_commit
                        )
                    )
        except StaleStateError:
            continue
        remove_override(store, key)
        return f"deployment {key} resumed: the override is removed, and git decides again"
    raise StaleStateError("the store kept changing", "try again")
