"""Generated inputs for the fuzz tests: YAML documents with keys near the real ones and values
of every type, schedule entries, placeholder strings, command-line parameters and webhook
requests. Also the Hypothesis settings every fuzz test uses (`bounded`)."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests.e2e.helpers import POOLS, PREFECT


def bounded(max_examples: int) -> settings:
    """Few examples and a generous per-example deadline: the whole tier takes well under a
    minute on two cores; no example database (the regression corpus keeps what failed)."""
    return settings(
        max_examples=max_examples,
        deadline=10_000,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


def near(words: list[str]) -> st.SearchStrategy[str]:
    """One of `words`, or one with a typo (a letter dropped, doubled or changed), or any text."""

    def typo(word: str, data: st.DataObject) -> str:
        if not word:
            return word
        i = data.draw(st.integers(0, len(word) - 1))
        how = data.draw(st.sampled_from(["drop", "double", "swap", "upper"]))
        if how == "drop":
            return word[:i] + word[i + 1 :]
        if how == "double":
            return word[: i + 1] + word[i:]
        if how == "upper":
            return word.upper()
        return word[:i] + data.draw(st.characters(codec="utf-8")) + word[i + 1 :]

    exact = st.sampled_from(words)
    misspelt = st.builds(lambda w, d: typo(w, d), exact, st.data())
    return st.one_of(exact, exact, misspelt, st.text(max_size=12))


NASTY_TEXT = st.sampled_from(
    [
        "",
        " ",
        "night\x1b[2Jly",
        "etl\x00",
        "evil\u202egnp.exe",
        "a/b",
        "%&><",
        "../../etc/passwd",
        "/etc/hostname",
        "{{ $MY_SECRET }}",
        "{{ prefect.variables.region }}",
        "{{ prefect.blocks.secret.missing }}",
        "{{ build-image.image }}",
        "{{",
        "}}",
        "x" * 300,
        "日本",
        "1e999",
        "NaN",
    ]
)

SCALARS: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    NASTY_TEXT,
)


def values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Any YAML value: scalars, lists and mappings (string or scalar keys), nested."""
    return st.recursive(
        SCALARS,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.dictionaries(st.one_of(st.text(max_size=8), NASTY_TEXT), inner, max_size=4),
        ),
        max_leaves=max_leaves,
    )


DEPLOYMENT_KEYS = [
    "name",
    "entrypoint",
    "work_pool",
    "parameters",
    "schedules",
    "schedule",
    "tags",
    "description",
    "version",
    "paused",
    "concurrency_limit",
    "enforce_parameter_schema",
    "pull",
    "build",
    "push",
    "triggers",
    "job_variables",
    "work_queue_name",
]
TOP_KEYS = ["deployments", "pull", "build", "push", "definitions", "prefect-version", "name"]
POOL_KEYS = [
    "name",
    "type",
    "description",
    "paused",
    "concurrency_limit",
    "base_job_template",
    "job_variables",
    "queues",
]
SCHEDULE_KEYS = [
    "cron",
    "interval",
    "rrule",
    "timezone",
    "anchor_date",
    "day_or",
    "active",
    "parameters",
    "slug",
    "schedule",
    "max_scheduled_runs",
]
STEP_NAMES = [
    "prefect.deployments.steps.git_clone",
    "prefect.deployments.steps.run_shell_script",
    "prefect.deployments.steps.set_working_directory",
    "prefect.deployments.steps.pip_install_requirements",
    "prefect_docker.deployments.steps.build_docker_image",
]


def _near_mapping(keys: list[str], value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.dictionaries(near(keys), value, max_size=6)


def _valid_deployment() -> dict[str, Any]:
    return {"name": "nightly", "entrypoint": "flows/etl.py:ingest", "work_pool": {"name": "etl"}}


CRONS = st.one_of(
    st.sampled_from(["0 2 * * *", "*/5 * * * *", "61 * * * *", "@daily", "0 0 31 2 *", "* * * *"]),
    st.lists(
        st.sampled_from(["*", "0", "59", "*/7", "1-5", "MON", "L", "?", "1,2", "99", "-1", "#"]),
        min_size=1,
        max_size=7,
    ).map(" ".join),
)
RRULE_PARTS = st.sampled_from(
    [
        "FREQ=MINUTELY",
        "FREQ=SECONDLY",
        "FREQ=HOURLY",
        "FREQ=DAILY",
        "FREQ=WEEKLY",
        "FREQ=MONTHLY",
        "FREQ=YEARLY",
        "FREQ=SOMETIMES",
        "INTERVAL=1",
        "INTERVAL=7",
        "INTERVAL=0",
        "COUNT=2000000",
        "COUNT=3",
        "UNTIL=20200101T000000Z",
        "UNTIL=29991231T000000Z",
        "BYSECOND=0,30",
        "BYMINUTE=*",
        "BYHOUR=25",
        "BYDAY=MO,TU",
        "BYDAY=-1FR",
        "BYMONTHDAY=31",
        "BYMONTHDAY=-1",
        "BYYEARDAY=366",
        "BYWEEKNO=53",
        "BYMONTH=2",
        "BYSETPOS=-1",
        "WKST=SU",
    ]
)
RRULES = st.one_of(
    st.lists(RRULE_PARTS, min_size=1, max_size=4).map(";".join),
    st.builds(
        lambda start, rule: f"DTSTART:{start}\nRRULE:{rule}",
        st.sampled_from(["20200101T000000", "99991231T235959", "19000101T000000Z", "bad"]),
        st.lists(RRULE_PARTS, min_size=1, max_size=3).map(";".join),
    ),
    st.text(max_size=30),
)
INTERVALS = st.one_of(
    st.integers(-10, 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["PT1M", "P1D", "1:00:00", "3 days, 0:00:00", "0", "-5", "PT0S", "P1000000Y"]),
    st.text(max_size=12),
)
TIMEZONES = st.one_of(
    st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Mars/Olympus", "", "utc"]),
    st.text(max_size=12),
)


def schedule_entries() -> st.SearchStrategy[Any]:
    """A schedule entry: mostly one of the three kinds with plausible parts, sometimes junk."""
    common = st.fixed_dictionaries(
        {},
        optional={
            "timezone": TIMEZONES,
            "active": st.one_of(st.booleans(), st.text(max_size=5)),
            "anchor_date": st.one_of(
                st.sampled_from(["2020-01-01T00:00:00", "9999-12-31", "0001-01-01", "soon"]),
                st.datetimes().map(lambda d: d.isoformat()),
            ),
            "day_or": st.one_of(st.booleans(), st.text(max_size=5)),
            "parameters": st.one_of(st.dictionaries(st.text(max_size=5), SCALARS, max_size=2)),
            "slug": st.one_of(st.text(max_size=8), NASTY_TEXT),
        },
    )
    kinds = st.one_of(
        st.fixed_dictionaries({"cron": CRONS}),
        st.fixed_dictionaries({"interval": INTERVALS}),
        st.fixed_dictionaries({"rrule": RRULES}),
    )
    flat = st.builds(lambda kind, rest: {**kind, **rest}, kinds, common)
    nested = flat.map(lambda s: {"schedule": s, "active": True})
    return st.one_of(flat, flat, flat, nested, _near_mapping(SCHEDULE_KEYS, values(6)))


def steps() -> st.SearchStrategy[Any]:
    return st.lists(
        st.dictionaries(
            near(STEP_NAMES),
            st.one_of(values(4), st.fixed_dictionaries({})),
            min_size=1,
            max_size=1,
        ),
        max_size=2,
    )


def deployments() -> st.SearchStrategy[Any]:
    """A deployment that is mostly right (so that the later stages are reached), with some of
    its keys replaced, misspelt or of the wrong type."""
    replacements = st.dictionaries(
        near(DEPLOYMENT_KEYS),
        st.one_of(
            values(8),
            st.lists(schedule_entries(), max_size=2),
            steps(),
            st.fixed_dictionaries(
                {"name": near(["etl", "gpu"])}, optional={"job_variables": values(6)}
            ),
            near(["flows/etl.py:ingest", "flows/etl.py:missing", "../etl.py:ingest"]),
        ),
        max_size=3,
    )
    return st.builds(lambda extra: {**_valid_deployment(), **extra}, replacements)


def prefect_documents() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.builds(lambda deps: {"deployments": deps}, st.lists(deployments(), max_size=3)),
        st.builds(
            lambda deps, top: {"deployments": deps, **top},
            st.lists(deployments(), max_size=2),
            _near_mapping(TOP_KEYS, st.one_of(values(6), steps())),
        ),
        values(10),
    )


def pool_documents() -> st.SearchStrategy[Any]:
    pool = st.builds(
        lambda extra: {"name": "etl", "type": "process", **extra},
        _near_mapping(POOL_KEYS, values(6)),
    )
    return st.one_of(
        st.builds(lambda pools: {"work_pools": pools}, st.lists(pool, max_size=3)), values(8)
    )


def as_yaml(document: Any) -> str:
    return yaml.safe_dump(document, allow_unicode=True, sort_keys=False)


def _mutate(text: str, data: st.DataObject) -> str:
    """A few edits of `text`: characters inserted, deleted or replaced, lines swapped, or a
    YAML construct (anchor, alias, merge key, tag, flow collection) spliced in."""
    splices = [
        "&a ",
        "*a",
        "<<: *a\n",
        "!!python/object:os.system ",
        "!!binary ",
        "? ",
        "{",
        "[",
        "]",
        "'",
        '"',
        "\t",
        "\n  ",
        "- ",
        ": ",
        "#",
        "%YAML 1.1\n---\n",
        "---\n",
        "\x00",
        "\ufeff",
        ".inf",
        ".nan",
        "1e999",
        "~",
    ]
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(text)))
        how = data.draw(st.sampled_from(["insert", "delete", "splice", "swap"]))
        if how == "insert":
            text = text[:position] + data.draw(st.text(min_size=1, max_size=3)) + text[position:]
        elif how == "delete":
            end = position + data.draw(st.integers(1, 5))
            text = text[:position] + text[end:]
        elif how == "splice":
            text = text[:position] + data.draw(st.sampled_from(splices)) + text[position:]
        else:
            lines = text.splitlines(keepends=True)
            if len(lines) > 1:
                i = data.draw(st.integers(0, len(lines) - 2))
                lines[i], lines[i + 1] = lines[i + 1], lines[i]
                text = "".join(lines)
    return text


ANCHORED = """\
definitions:
  pool: &pool {name: etl, job_variables: {env: {A: "1"}}}
  params: &params {days: 3}
deployments:
  - &first
    name: nightly
    entrypoint: flows/etl.py:ingest
    work_pool: *pool
    parameters: *params
  - <<: *first
    name: hourly
    schedules: [{cron: "0 * * * *"}]
"""


def prefect_texts() -> st.SearchStrategy[str]:
    """prefect.yaml text: generated documents, or a valid file (with anchors and merge keys,
    or the plain one) after a few random edits."""
    return st.one_of(
        prefect_documents().map(as_yaml),
        st.builds(_mutate, st.sampled_from([PREFECT, ANCHORED]), st.data()),
    )


def pool_texts() -> st.SearchStrategy[str]:
    return st.one_of(pool_documents().map(as_yaml), st.builds(_mutate, st.just(POOLS), st.data()))


def placeholder_texts() -> st.SearchStrategy[str]:
    """Strings with `{{ }}` placeholders of every kind, well or badly formed, among text."""
    name = st.one_of(
        st.sampled_from(
            [
                "$REGION",
                "$MY_SECRET",
                "$MISSING",
                "$",
                "prefect.variables.region",
                "prefect.variables.nested.a.1",
                "prefect.variables.missing",
                "prefect.blocks.secret.token",
                "prefect.blocks.secret",
                "prefect.blocks.json.cfg.a.b",
                "build-image.image",
                "build-image.image.tag",
                "ctx.flow.name",
                "a.b.c",
                "",
                " ",
            ]
        ),
        st.text(max_size=10),
    )
    placeholder = st.builds(
        lambda left, inner, right: f"{left}{inner}{right}",
        st.sampled_from(["{{", "{{ ", "{ {", "{{{"]),
        name,
        st.sampled_from(["}}", " }}", "}", "}}}"]),
    )
    return st.lists(st.one_of(placeholder, st.text(max_size=6)), min_size=1, max_size=4).map(
        "".join
    )


def templates() -> st.SearchStrategy[Any]:
    """A template value: placeholder strings inside lists and mappings."""
    leaf = st.one_of(placeholder_texts(), SCALARS)
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(placeholder_texts(), inner, max_size=3)
        ),
        max_leaves=8,
    )


JSON_TEXTS = st.one_of(
    st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8)),
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
        ),
        max_leaves=10,
    ).map(lambda v: __import__("json").dumps(v)),
    st.sampled_from(
        [
            "Infinity",
            "-Infinity",
            "NaN",
            "1e999",
            "-1e999",
            "[" * 1000 + "]" * 1000,
            '{"a":' * 100 + "1" + "}" * 100,
            "{",
            '{"a": 1,}',
            '"\\ud800"',
            "\x00",
            "2024-05-17",
        ]
    ),
    st.text(max_size=20),
)
