"""Block documents read from a Prefect server, for `reconcile import --from-prefect2
--blocks-from prefect+http(s)://HOST/api` (reconciler/onboard/prefect2.py): the infrastructure
and storage blocks a Prefect 2 `deployment.yaml` names by `SLUG/NAME` only.

Read-only: `GET /block_types/slug/{slug}/block_documents/name/{name}`, *without*
`include_secrets`, so the server itself masks the fields its block schema lists as secret
(`secret_fields`, `env.*` style wildcards included): a secret's value never reaches this
process. The secret fields' paths come back with the data; the import writes a placeholder
there (reconciler/onboard/secrets.py). Same URL form and credentials as the Prefect target
(reconciler/prefect_target/url.py); an unreachable server or a refused key is the client's
`UserError` with a hint."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from reconciler.prefect_target.client import PrefectClient, PrefectError
from reconciler.prefect_target.url import parse_prefect_url

MASKED = "*" * 8
"""What Prefect's server answers for a secret field read without `include_secrets`."""


@dataclass(frozen=True)
class ServerBlock:
    """One block document as the server holds it (secret fields masked)."""

    slug: str
    name: str
    data: dict[str, Any]
    secret_fields: tuple[str, ...]
    """Dotted paths of the block schema's secret fields (`password`, `env.*`)."""


class BlockReader:
    """Reads block documents by type slug and name from one Prefect API."""

    def __init__(self, url: str, client: PrefectClient | None = None) -> None:
        target = parse_prefect_url(url)
        self.api_url = target.api_url
        self.client = client or PrefectClient.of(target)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> BlockReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def read(self, slug: str, name: str) -> ServerBlock | None:
        """The block document `slug/name`; None when the server has no such block (or no such
        block type)."""
        path = (
            f"block_types/slug/{quote(slug, safe='')}/block_documents/name/{quote(name, safe='')}"
        )
        try:
            found = self.client.get(path)
        except PrefectError as exc:
            if exc.status == 404:
                return None
            raise
        if not isinstance(found, dict):
            raise PrefectError(f"GET /{path} did not answer with a block document")
        data = found.get("data") or {}
        schema = found.get("block_schema") or {}
        fields = schema.get("fields") if isinstance(schema, dict) else None
        secret = fields.get("secret_fields") if isinstance(fields, dict) else None
        return ServerBlock(
            slug,
            name,
            dict(data) if isinstance(data, dict) else {},
            tuple(str(s) for s in secret or ()),
        )
