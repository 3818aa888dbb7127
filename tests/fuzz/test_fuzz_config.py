"""Generated prefect.yaml and work-pools.yaml files through the loader and the whole planning
pipeline (in memory: the same code the CLI runs): errors with a position, or a plan every
renderer prints; never an exception."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz import strategies as gen
from tests.fuzz.checks import check_config, check_yaml

pytestmark = pytest.mark.fuzz


@gen.bounded(60)
@given(gen.prefect_texts())
def test_prefect_yaml(text: str) -> None:
    check_config({"prefect.yaml": text})


@gen.bounded(30)
@given(gen.pool_texts())
def test_work_pools_yaml(text: str) -> None:
    check_config({"work-pools.yaml": text})


@gen.bounded(60)
@given(st.one_of(gen.prefect_texts().map(str.encode), st.binary(max_size=200)))
def test_yaml_loader_alone(content: bytes) -> None:
    check_yaml(content)


@gen.bounded(25)
@given(
    st.sampled_from(["prefect.yaml", "work-pools.yaml", "team/prefect.yaml"]),
    st.one_of(
        st.sampled_from(
            ["../outside.yaml", "/etc/hostname", "loop", "team", ".", "", "a/../../b", "\x00"]
        ),
        st.text(max_size=15),
    ),
)
def test_configuration_files_as_symlinks(name: str, target: str) -> None:
    check_config({}, symlinks={name: target, "loop": name})
