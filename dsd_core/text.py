"""Untrusted text (file names, paths, checkpoint metadata, event-log fields, messages built from them) made safe
to print: a name holding a newline could forge an `error:` line, and an escape sequence could drive the
terminal. Torch-free and Rich-free: the CLI, the terminal app and the engine's messages share it."""

from __future__ import annotations

import unicodedata

NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# bidirectional controls: they reorder what a terminal shows ("Trojan Source"), so a name could hide its end
BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
UNSAFE_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})  # C0, DEL, C1; lone surrogates; line/paragraph breaks


def _visible(ch: str) -> str:
    if ch in NAMED:
        return NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe_text(value: object) -> str:
    """`str(value)` with every control character written as a visible escape, as `repr` writes it (`\\n`,
    `\\x1b`, `\\x9b`, `\\u202e`): one line, nothing a terminal acts on, and printable in any encoding (a name
    that is not UTF-8 reaches Python as lone surrogates). Applying it twice changes nothing more."""
    text = str(value)
    if text.isprintable():  # the usual case: nothing to do
        return text
    return "".join(_visible(ch) if ch in BIDI or unicodedata.category(ch) in UNSAFE_CATEGORIES else ch
                   for ch in text)
