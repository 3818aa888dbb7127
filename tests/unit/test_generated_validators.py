"""The generated fast-path validators must come from the schemas as they are now."""

from __future__ import annotations

import importlib

import pytest

from reconciler.prefect_rules import schema_code
from reconciler.prefect_rules.validation import schema_text


@pytest.mark.parametrize("lenient", [False, True])
@pytest.mark.parametrize("schema", schema_code.SCHEMAS)
def test_generated_validator_matches_its_schema(schema: str, lenient: bool) -> None:
    name = schema_code.module_name(schema, lenient=lenient)
    module = importlib.import_module(f"reconciler.prefect_rules.generated.{name}")
    assert schema_code.schema_digest(schema_text(schema)) == module.SCHEMA_SHA256, (
        f"schemas/{schema} changed since reconciler/prefect_rules/generated/{name}.py was "
        "generated: run `make schemas`"
    )


def test_lenient_validator_accepts_unknown_keys_that_strict_rejects() -> None:
    import fastjsonschema

    strict = importlib.import_module("reconciler.prefect_rules.generated.prefect_strict")
    lenient = importlib.import_module("reconciler.prefect_rules.generated.prefect_lenient")
    document = {"deployments": [{"name": "a", "entrypiont": "f.py:g"}]}
    lenient.check(document)
    with pytest.raises(fastjsonschema.JsonSchemaException):
        strict.check(document)
    with pytest.raises(fastjsonschema.JsonSchemaException):  # schedules stay closed
        lenient.check({"deployments": [{"schedules": [{"cron": "* * * * *", "catchup": 1}]}]})


def test_strict_validator_accepts_every_declared_property() -> None:
    """Properties named like annotations ("description", "title") are properties, not
    annotations: the strict fast path must accept them."""
    strict = importlib.import_module("reconciler.prefect_rules.generated.prefect_strict")
    pools = importlib.import_module("reconciler.prefect_rules.generated.work_pools_strict")
    strict.check(
        {
            "name": "p",
            "description": "a project",
            "deployments": [
                {"name": "a", "description": "d", "version": "1", "tags": ["t"], "paused": False}
            ],
        }
    )
    pools.check({"work_pools": [{"name": "p", "type": "process", "description": "d"}]})
