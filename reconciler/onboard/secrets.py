"""The rule that keeps secrets out of imported files.

A value is written as a placeholder, never in clear, when:

1. it is the value of a block document the source holds (the whole value, or a text inside a
   block's mapping): written `{{ prefect.blocks.SLUG.NAME[.PATH] }}`, which the plan resolves
   from the same block, so nothing needs providing when the block is in the store;
2. it is a job variable the source recorded as sensitive (`sensitive_job_variables`: it was
   read from a secret-looking `{{ $NAME }}` when it was planned), or a text under a key whose
   name looks like a credential (`core.masking.looks_secret`: SECRET, PASSWORD, PASSWD, TOKEN,
   API_KEY, PRIVATE, CREDENTIAL), in job variables, parameters and pull steps: written
   `{{ $NAME }}`, NAME being the key (`env.DB_PASSWORD` -> `$DB_PASSWORD`), made to look secret
   itself so that the plan marks it sensitive again (a name already standing for another
   value gets a number: `DB_PASSWORD_2`). Each such name is listed as a value to provide (an
   environment variable when planning).

3. it is a field a block document's schema marks secret (`secret_fields`: `password`,
   `env.*`), as a Prefect server answers it (masked): written `{{ $NAME }}` as in 2
   (`hide_fields`); the same field of the same block gets the same NAME wherever it is used.

A text that already is a placeholder is kept as it is. Variables (`{{ prefect.variables.X }}`)
are plain in our stores (plans show them), so they are not secrets."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.core.masking import looks_secret


@dataclass(frozen=True, order=True)
class Needed:
    """A value the user must provide before planning the imported files."""

    kind: str  # "env" or "block"
    name: str
    where: str

    @property
    def placeholder(self) -> str:
        if self.kind == "env":
            return "{{ $" + self.name + " }}"
        return "{{ prefect.blocks." + self.name + " }}"


@dataclass
class SecretRule:
    """Applies the rule to values of one source; collects what to provide."""

    blocks: Mapping[tuple[str, str], Any]
    needed: set[Needed] = field(default_factory=set)
    hidden: int = 0

    def __post_init__(self) -> None:
        self._env_values: dict[str, Any] = {}
        self._by_text: dict[str, str] = {}
        for (slug, name), value in sorted(self.blocks.items()):
            base = f"{slug}.{name}"
            if isinstance(value, Mapping) and len(value) == 1 and "value" in value:
                value = value["value"]  # system blocks: paths start inside `value`
            for path, text in _texts(value, ""):
                if text and not _is_placeholder(text):
                    self._by_text.setdefault(text, f"{base}.{path}" if path else base)

    @property
    def secret_texts(self) -> list[str]:
        return list(self._by_text)

    def scrub(self, value: Any, where: str, sensitive: frozenset[str] = frozenset()) -> Any:
        """`value` with every secret replaced; `sensitive` are dotted paths known secret."""
        return self._walk(value, where, "", None, sensitive)

    def _walk(
        self, value: Any, where: str, path: str, key: str | None, sensitive: frozenset[str]
    ) -> Any:
        if isinstance(value, Mapping):
            return {
                k: self._walk(v, where, _join(path, str(k)), str(k), sensitive)
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [  # list items are not under the key's name (`image_pull_secrets: [name]`)
                self._walk(v, where, _join(path, str(i)), None, sensitive)
                for i, v in enumerate(value)
            ]
        if not isinstance(value, str) or not value or _is_placeholder(value):
            if path in sensitive and value is not None and not isinstance(value, str):
                return self._env(where, path, key, value)
            return value
        block = self._by_text.get(value)
        if block is not None:
            self.hidden += 1
            self.needed.add(Needed("block", block, where))
            return "{{ prefect.blocks." + block + " }}"
        if path in sensitive or (key is not None and looks_secret(key)):
            return self._env(where, path, key, value)
        return value

    def hide_fields(
        self, data: Mapping[str, Any], secret_fields: Iterable[str], where: str, block: str
    ) -> dict[str, Any]:
        """`data` (a block document's fields) with each field `secret_fields` names (a
        dotted path; `*` stands for any key from there on) written `{{ $NAME }}`; `block`
        ("SLUG/NAME") tells one block's field from the same field of another."""
        patterns = [tuple(f.split(".")) for f in secret_fields]

        def secret(path: tuple[str, ...]) -> bool:
            for pattern in patterns:
                stop = pattern.index("*") if "*" in pattern else len(pattern)
                if path[:stop] == pattern[:stop] and len(path) >= stop:
                    return True
            return False

        def walk(value: Any, path: tuple[str, ...]) -> Any:
            if isinstance(value, Mapping):
                return {k: walk(v, (*path, str(k))) for k, v in value.items()}
            if value is None or (isinstance(value, str) and _is_placeholder(value)):
                return value
            if secret(path) or value == "*" * 8:  # masked by the server: a secret too
                dotted = ".".join(path)
                return self._env(where, dotted, path[-1] if path else None, f"{block}:{dotted}")
            return value

        return dict(walk(data, ()))

    def _env(self, where: str, path: str, key: str | None, value: Any) -> str:
        """`{{ $NAME }}`; a NAME already standing for another value gets a number
        (`DB_PASSWORD_2`): one environment variable cannot give both back."""
        base = _env_name(key or path)
        name, number = base, 2
        while self._env_values.setdefault(name, value) != value:
            name, number = f"{base}_{number}", number + 1
        self.hidden += 1
        self.needed.add(Needed("env", name, where))
        return "{{ $" + name + " }}"


def _env_name(key: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", key).upper().strip("_") or "VALUE"
    if name[0].isdigit():
        name = f"V_{name}"
    return name if looks_secret(name) else f"{name}_SECRET"


def _join(path: str, part: str) -> str:
    return f"{path}.{part}" if path else part


def _is_placeholder(text: str) -> bool:
    return text.strip().startswith("{{") and text.strip().endswith("}}")


def _texts(value: Any, path: str) -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, Mapping):
        return [t for k, v in value.items() for t in _texts(v, _join(path, str(k)))]
    return []
