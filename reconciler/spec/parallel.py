"""Parse prefect.yaml files on every core (part of the load stage).

Parsing YAML is the largest single cost of a plan, and it is pure and independent per file, so
a repository with many large files is parsed by forked children as well as by this process.
Children send back the parsed values and diagnostics (pickled through a pipe); the YAML node
graph is not sent: a position, when a later stage needs one, is found by composing the file
again. Small inputs, one core, or a process with threads (where fork is unsafe) parse here.
"""

from __future__ import annotations

import os
import pickle
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace

from reconciler.diagnostics import Diagnostic
from reconciler.spec.prefect_file import PrefectFile, parse_prefect_file

PARALLEL_MIN_BYTES = 256 * 1024
"""Below this much YAML, forking costs more than it saves."""

Parsed = tuple[PrefectFile | None, list[Diagnostic]]


@dataclass(frozen=True)
class ParseJob:
    content: bytes
    path: str
    display: str


def parse_all(jobs: Sequence[ParseJob], *, strict: bool) -> list[Parsed]:
    """`parse_prefect_file` for every job, in the order given."""
    workers = min(os.cpu_count() or 1, len(jobs))
    total = sum(len(job.content) for job in jobs)
    if workers < 2 or total < PARALLEL_MIN_BYTES or threading.active_count() > 1:
        return [_parse(job, strict) for job in jobs]
    order = sorted(range(len(jobs)), key=lambda i: -len(jobs[i].content))
    shares = [order[w::workers] for w in range(workers)]  # balanced by size
    children = [_fork(jobs, share, strict) for share in shares[1:]]
    results: dict[int, Parsed] = {i: _parse(jobs[i], strict) for i in shares[0]}
    for child, share in zip(children, shares[1:], strict=True):
        received = _collect(child)
        if received is None:  # the child failed: parse its share here
            received = [_parse(jobs[i], strict) for i in share]
        for i, parsed in zip(share, received, strict=True):
            results[i] = _with_content(parsed, jobs[i].content)
    return [results[i] for i in range(len(jobs))]


def _parse(job: ParseJob, strict: bool) -> Parsed:
    return parse_prefect_file(job.content, job.path, strict=strict, display=job.display)


def _fork(jobs: Sequence[ParseJob], share: list[int], strict: bool) -> tuple[int, int] | None:
    try:
        read_end, write_end = os.pipe()
        pid = os.fork()
    except OSError:
        return None
    if pid == 0:  # the child: parse, send, and leave without running any cleanup of the parent
        os.close(read_end)
        code = 0
        try:
            parsed = [_for_transfer(_parse(jobs[i], strict)) for i in share]
            with os.fdopen(write_end, "wb") as out:
                out.write(pickle.dumps(parsed, protocol=pickle.HIGHEST_PROTOCOL))
        except BaseException:
            code = 1
        os._exit(code)
    os.close(write_end)
    return pid, read_end


def _collect(child: tuple[int, int] | None) -> list[Parsed] | None:
    if child is None:
        return None
    pid, read_end = child
    with os.fdopen(read_end, "rb") as source:
        data = source.read()
    _, status = os.waitpid(pid, 0)
    if status != 0 or not data:
        return None
    received: list[Parsed] = pickle.loads(data)
    return received


def _for_transfer(parsed: Parsed) -> Parsed:
    prefect_file, diagnostics = parsed
    if prefect_file is None:
        return parsed
    document = replace(prefect_file.document.without_nodes(), content=None)
    return replace(prefect_file, document=document), diagnostics


def _with_content(parsed: Parsed, content: bytes) -> Parsed:
    prefect_file = parsed[0]
    if prefect_file is None or prefect_file.document.content is not None:
        return parsed
    prefect_file.document.content = content
    return parsed
