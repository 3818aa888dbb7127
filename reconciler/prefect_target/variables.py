"""`reconcile variable set|ls|rm --store prefect+http(s)://HOST/api`: the variables that
`{{ prefect.variables.NAME }}` reads, kept in the Prefect server itself (its REST API:
`/variables/`), as plans against that server read them (reconciler/prefect_target/reader.py).
Same URL and key handling as the Prefect target; Prefect's own refusals (a name it does not
take, a value too long) are shown as Prefect words them."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from reconciler.core.errors import UserError
from reconciler.prefect_target.client import PrefectClient, PrefectError
from reconciler.prefect_target.url import parse_prefect_url


def _client(url: str) -> PrefectClient:
    return PrefectClient.of(parse_prefect_url(url))


def _refused(name: str, exc: PrefectError) -> UserError:
    if exc.status in (400, 422):
        return UserError(
            f'the Prefect server refused variable "{name}": {exc.detail or exc.message}',
            "Prefect variable names hold lowercase letters, digits, '-' and '_'",
        )
    return exc


def set_variable(url: str, name: str, value: Any) -> bool:
    """Create or change variable `name`; True when it was created."""
    path = f"variables/name/{quote(name, safe='')}"
    with _client(url) as client:
        try:
            client.patch(path, {"value": value})
            return False
        except PrefectError as exc:
            if exc.status != 404:
                raise _refused(name, exc) from None
        try:
            client.post("variables/", {"name": name, "value": value})
        except PrefectError as exc:
            raise _refused(name, exc) from None
        return True


def list_variables(url: str) -> dict[str, Any]:
    with _client(url) as client:
        found = client.filter_all("variables/filter")
    return {str(v["name"]): v.get("value") for v in sorted(found, key=lambda v: str(v["name"]))}


def delete_variable(url: str, name: str) -> bool:
    """False when there was no such variable."""
    with _client(url) as client:
        try:
            client.delete(f"variables/name/{quote(name, safe='')}")
        except PrefectError as exc:
            if exc.status == 404:
                return False
            raise
    return True
