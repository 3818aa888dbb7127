"""Secret masking for everything reconciler prints or records: plans, errors, logs, history.

A `Masker` knows the secret strings of this run (block values from the store, and environment
values whose names look secret) and replaces each occurrence, longest first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "(sensitive value)"
MIN_SECRET_LENGTH = 3  # shorter strings would mask ordinary text


class Masker:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        unique = sorted({s for s in secrets if len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(s) for s in unique)) if unique else None

    def __call__(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(MASK, text)
