"""Generated webhook requests (paths, bodies, headers, signatures) against the daemon's
endpoints (its Starlette app, in-process): a 4xx answer, or 202 exactly when the signature or
token is right; a reconcile is triggered only then; never a 500."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz import strategies as gen
from tests.fuzz.checks import check_webhook

pytestmark = pytest.mark.fuzz

HEADER_NAMES = st.sampled_from(
    [
        b"x-hub-signature-256",
        b"x-gitlab-token",
        b"content-length",
        b"content-type",
        b"X-Hub-Signature-256",
        b"transfer-encoding",
    ]
)
HEADER_VALUES = st.one_of(
    st.binary(max_size=80),
    st.sampled_from([b"sha256=", b"sha256=00", b"hook-secret", b" 12", b"\xb2", b"-1", b"1e3"]),
)
SIGNED = st.sampled_from(["github", "gitlab", "wrong", "none"])


@gen.bounded(100)
@given(
    path=st.one_of(
        st.sampled_from(
            ["/hooks/etl", "/hooks/nohook", "/hooks/missing", "/hooks/", "/hooks/etl/x"]
        ),
        st.text(max_size=20).map(lambda t: "/hooks/" + t),
    ),
    body=st.binary(max_size=2000),
    headers=st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=4),
    signed=SIGNED,
    method=st.sampled_from(["POST", "POST", "POST", "GET", "PUT"]),
)
def test_webhook_requests(
    path: str, body: bytes, headers: list[tuple[bytes, bytes]], signed: str, method: str
) -> None:
    check_webhook(path, body, headers, signed, method)


def _unused(*_: Any) -> None:
    pass
