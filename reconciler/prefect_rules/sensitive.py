"""Job variables that hold a secret from the environment (plan: recorded with the deployment;
worker: masked in the run's logs, state messages and output).

A deployment's `job_variables` may read the environment when it is planned: `{{ $NAME }}` is
resolved then, as Prefect does at deploy time, and the value is stored with the deployment.
When NAME looks secret (`masking.looks_secret`, the rule plans mask by), the plan records the
dotted path of that job variable (`env.CONNECTION`; list items by index) in the deployment's
`sensitive_job_variables`; a worker masks the value found there in everything the run shows.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from reconciler.core.masking import looks_secret, strings_in
from reconciler.model.specs import DeploymentSpec
from reconciler.prefect_rules.templating import PlaceholderKind, find_placeholders

FIELD = "sensitive_job_variables"


def sensitive_paths(job_variables: Mapping[str, Any]) -> list[str]:
    """Dotted paths of the job variables whose text reads a secret-looking `{{ $NAME }}`."""
    return sorted(path for path, text in _texts(job_variables, "") if _reads_secret(text))


def sensitive_values(deployment: DeploymentSpec) -> list[str]:
    """The texts a deployment holds at its recorded sensitive paths."""
    found: list[str] = []
    for path in deployment.sensitive_job_variables:
        value: Any = deployment.job_variables
        for key in str(path).split("."):
            if isinstance(value, list) and key.isdigit() and int(key) < len(value):
                value = value[int(key)]
            else:
                value = value.get(key) if isinstance(value, Mapping) else None
        found.extend(strings_in(value))
    return found


def _reads_secret(text: str) -> bool:
    return any(
        p.kind is PlaceholderKind.ENV and looks_secret(p.name.lstrip("$"))
        for p in find_placeholders(text)
    )


def _texts(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _texts(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _texts(item, f"{path}.{index}" if path else str(index))
