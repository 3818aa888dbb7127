"""The API's OpenAPI document is stable: what /api/v1/openapi.json serves is the published
schemas/web-api-v1.openapi.json. A deliberate change (1.x: additions only) rewrites the file
with `RECONCILER_UPDATE_GOLDEN=1 .venv/bin/pytest tests/web/test_openapi_stable.py`; read the
diff, and raise `info.version` with it."""

from __future__ import annotations

import json
import os
from pathlib import Path

from reconciler.web.api.openapi import openapi_document

PUBLISHED = Path(__file__).resolve().parents[2] / "schemas" / "web-api-v1.openapi.json"


def test_the_served_document_is_the_published_one() -> None:
    served = json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"
    if os.environ.get("RECONCILER_UPDATE_GOLDEN") == "1":
        PUBLISHED.write_text(served)
    assert PUBLISHED.exists(), f"{PUBLISHED} is missing: run with RECONCILER_UPDATE_GOLDEN=1"
    published = json.loads(PUBLISHED.read_text())
    served_operations = {
        (path, method) for path, ops in openapi_document()["paths"].items() for method in ops
    }
    removed = {
        (path, method) for path, ops in published["paths"].items() for method in ops
    } - served_operations
    assert not removed, f"v1 only adds: these went away {sorted(removed)}"
    assert openapi_document() == published, (
        "the API changed: if on purpose, update the published document (see this module)"
    )
