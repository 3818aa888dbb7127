"""Generated `{{ }}` placeholders: in the templating functions directly, and in a prefect.yaml
(environment, variables, blocks, step outputs) through the planning pipeline."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz import strategies as gen
from tests.fuzz.checks import check_config, check_template

pytestmark = pytest.mark.fuzz

VALUES = {"build-image": {"image": "registry/etl:1"}, "region": "eu", "n": 3}


@gen.bounded(100)
@given(gen.templates())
def test_templating_functions(template: Any) -> None:
    check_template(template, VALUES)


@gen.bounded(40)
@given(
    st.sampled_from(["description", "version", "tags", "parameters", "work_pool", "name"]),
    gen.placeholder_texts(),
)
def test_placeholders_in_a_prefect_yaml(field: str, text: str) -> None:
    deployment: dict[str, Any] = {
        "name": "nightly",
        "entrypoint": "flows/etl.py:ingest",
        "work_pool": {"name": "etl", "job_variables": {"env": {"X": text}}},
    }
    if field == "tags":
        deployment["tags"] = [text]
    elif field == "parameters":
        deployment["parameters"] = {"region": text}
    elif field == "work_pool":
        deployment["work_pool"] = {"name": text}
    else:
        deployment[field] = text
    check_config({"prefect.yaml": gen.as_yaml({"deployments": [deployment]})})
