"""A step's output stream: prefixed, masked, silenced by quiet, last lines kept for errors."""

from __future__ import annotations

from pathlib import Path

from reconciler.core.masking import MASK, Masker
from reconciler.steps.context import StepContext
from reconciler.steps.output import TAIL_LINES, StepOutput


def test_lines_are_prefixed_and_masked_as_written() -> None:
    written: list[str] = []
    output = StepOutput("build-image", write=written.append, mask=Masker(["s3cret"]))
    output.line("token is s3cret")
    assert written == [f"[build-image] token is {MASK}"]
    assert output.last_lines() == [f"token is {MASK}"]


def test_quiet_writes_nothing_but_keeps_the_last_lines() -> None:
    written: list[str] = []
    output = StepOutput("step", write=written.append, mask=str, quiet=True)
    for number in range(TAIL_LINES + 5):
        output.line(f"line {number}")
    assert written == []
    assert output.last_lines() == [f"line {n}" for n in range(5, TAIL_LINES + 5)]


def test_notes_are_shown_but_not_quoted_in_errors() -> None:
    written: list[str] = []
    output = StepOutput("step", write=written.append, mask=str)
    output.note("$ echo hi")
    output.line("hi", show=False)
    assert written == ["[step] $ echo hi"]
    assert output.last_lines() == ["hi"]


def test_printed_text_becomes_lines_even_when_written_in_pieces() -> None:
    written: list[str] = []
    output = StepOutput("custom", write=written.append, mask=str)
    stream = output.as_file()
    stream.write("first\nsec")
    stream.write("ond\nno newline")
    assert written == ["[custom] first", "[custom] second"]
    stream.flush()
    assert written[-1] == "[custom] no newline"


def test_a_secret_learned_later_is_masked_from_then_on(tmp_path: Path) -> None:
    written: list[str] = []
    context = StepContext(cwd=tmp_path, env={}, write=written.append)
    output = context.open_output("clone")
    output.line("before tok-123")
    context.hide("tok-123")
    output.line("after tok-123")
    assert written == ["[clone] before tok-123", f"[clone] after {MASK}"]
    assert output.last_lines() == [f"before {MASK}", f"after {MASK}"]
