"""Pure parts of the PR workflow and notifications: which refs the daemon plans, the sticky
comment's body, the parts of a notification URL that are masked."""

from __future__ import annotations

import pytest

from reconciler.ci.pr_comment import MAX_COMMENT, PlanRequest, comment_body
from reconciler.core.errors import UserError
from reconciler.daemon.notify import secret_parts
from reconciler.daemon.ref_plans import check_ref


@pytest.mark.parametrize(
    "ref", ["main", "feature/x", "refs/pull/42/head", "v1.2.3", "3f2a9c1", "a_b-c"]
)
def test_refs_a_user_gives_are_planned(ref: str) -> None:
    assert check_ref(ref) == ref


@pytest.mark.parametrize(
    "ref", ["--upload-pack=x", "-x", "main..evil", "HEAD~1", "a b", "x.lock", "a/", "", "é"]
)
def test_options_and_revision_expressions_are_refused(ref: str) -> None:
    with pytest.raises(UserError) as caught:
        check_ref(ref)
    assert "is not a ref this daemon plans" in caught.value.message
    assert caught.value.hint and "refs/pull/N/head" in caught.value.hint


def test_the_comment_carries_its_marker_and_is_cut_to_fit() -> None:
    request = PlanRequest("http://d", "flows", "refs/pull/1/head", "t")
    body = comment_body(request, {"markdown": "x" * (MAX_COMMENT + 10), "commit": "a" * 40}, None)
    assert body.startswith("<!-- reconciler-plan:flows -->")
    assert "cut: run `reconcile plan` for the rest" in body and len(body) < MAX_COMMENT + 500
    failed = comment_body(request, None, "no repository 'flows'")
    assert "could not be made: no repository 'flows'" in failed


def test_every_part_of_a_url_that_may_be_a_token_is_masked() -> None:
    parts = secret_parts("json://user:pa55word@hooks.internal:8080/T00/B00/XXXX?token=abc123")
    for part in ("pa55word", "T00", "XXXX", "abc123", "user", "user:pa55word@hooks.internal:8080"):
        assert part in parts
