"""Secret masking for everything reconciler prints or records: plans, errors, logs, history.

A `Masker` knows the secret strings of this run (block values from the store, and environment
values whose names look secret: `looks_secret`, one rule for plans and runs) and replaces each
occurrence, longest first. Renderers print values as JSON and error messages quote them with
`repr`, so a secret is also recognised in those written forms: a password holding `"`, `\\`
or `ü` is hidden however it was escaped.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable
from typing import Any

from reconciler.core.diagnostics import Diagnostic

MASK = "(sensitive value)"
MIN_SECRET_LENGTH = 3  # shorter strings would mask ordinary text
SECRET_NAME = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|API_KEY|PRIVATE|CREDENTIAL", re.I)


def looks_secret(name: str) -> bool:
    """Whether an environment variable's value is sensitive, by its name: what a `{{ $NAME }}`
    placeholder reads is masked in plans and in runs when this is true."""
    return SECRET_NAME.search(name) is not None


def written_forms(secret: str) -> set[str]:
    """The ways `secret` can appear in output: as is, inside JSON strings (with and without
    `\\u` escapes for non-ASCII) and inside a Python `repr`."""
    return {
        secret,
        json.dumps(secret, ensure_ascii=False)[1:-1],
        json.dumps(secret)[1:-1],
        repr(secret)[1:-1],
    }


def strings_in(value: Any) -> list[str]:
    """Every string inside a JSON-like value (mapping values and list items, recursively)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in strings_in(item)]
    if isinstance(value, list):
        return [s for item in value for s in strings_in(item)]
    return []


class Masker:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = frozenset(s for s in secrets if len(s) >= MIN_SECRET_LENGTH)
        forms = {form for secret in self.secrets for form in written_forms(secret)}
        unique = sorted(forms, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(s) for s in unique)) if unique else None

    def __call__(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(MASK, text)

    @property
    def hides_nothing(self) -> bool:
        """True when this run has no secret: masking leaves every text as it is."""
        return self._pattern is None

    def hides_something_in(self, text: str) -> bool:
        return self._pattern is not None and self._pattern.search(text) is not None

    def with_secrets(self, more: Iterable[str]) -> Masker:
        """A masker that also hides `more`."""
        return Masker([*self.secrets, *more])

    def value(self, value: Any) -> Any:
        """A copy of a JSON-like value with every string in it (keys too) masked: for records
        such as the applied-plan history, which are stored as data, not printed."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, dict):
            return {self(str(k)): self.value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(item) for item in value]
        return value

    def diagnostic(self, diagnostic: Diagnostic) -> Diagnostic:
        """The diagnostic with its message and hint masked (values in errors may be secret)."""
        return dataclasses.replace(
            diagnostic,
            message=self(diagnostic.message),
            hint=self(diagnostic.hint) if diagnostic.hint is not None else None,
        )
