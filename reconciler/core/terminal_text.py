"""Text made safe for a terminal, and the characters names may not hold (CLI and validation).

Names come from repositories and the store; printed raw, an ESC sequence can rewrite the
screen, a NUL cut a line short, and a bidi control (U+202E) show `gnp.exe` as `exe.png`.
`printable` escapes every such character (`\\x1b`, `\\u202e`): the CLI's tables, diagnostics,
errors and hints go through it. `unsafe_characters` finds them, so the plan can refuse names
that hold one.

Unsafe: the C0 and C1 control characters and DEL (Unicode category Cc), the line and paragraph
separators, and the bidi controls (U+061C, U+200E, U+200F, U+202A to U+202E, U+2066 to
U+2069). Tabs and newlines are escaped in names too; `printable` keeps them when told to.
"""

from __future__ import annotations

import unicodedata

_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029"
)


def is_unsafe(character: str) -> bool:
    return unicodedata.category(character) == "Cc" or character in _BIDI_CONTROLS


def unsafe_characters(text: str) -> list[str]:
    """The unsafe characters of `text`, each once, escaped (`\\x1b`), in order."""
    found: list[str] = []
    for character in text:
        escaped = _escape(character)
        if is_unsafe(character) and escaped not in found:
            found.append(escaped)
    return found


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """`text` with every unsafe character escaped; newlines (and tabs) kept if asked."""
    if not any(is_unsafe(c) for c in text):
        return text
    kept = "\n\t" if keep_newlines else ""
    return "".join(c if c in kept or not is_unsafe(c) else _escape(c) for c in text)


def _escape(character: str) -> str:
    code = ord(character)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
