"""What the CLI prints is shown, never obeyed: unprintable characters are written escaped.

Text typed into the registry is checked on the way in (`registry.text`), but
rows stored before that rule, a member's data, or a message quoting a
file name could still hold an escape sequence that would drive an admin's
terminal (change colours, retitle the window, hide lines). `install()` wraps
the process's stdout and stderr once, at start-up, so every line the CLI
writes, through `typer.echo`, `print` or logging, passes `escape()`: C0/C1
control characters (but newline and tab), bidirectional controls, line
separators and lone surrogates become `\\uXXXX`, which is also a valid escape
inside a JSON string, so `--json` output stays parseable and exact.
"""

from __future__ import annotations

import io
import sys
from typing import TextIO

from registry.text import unsafe_character


def escape(text: str) -> str:
    """`text` with every character `registry.text` would refuse (newline and tab kept) escaped."""
    if unsafe_character(text, multiline=True) is None:
        return text  # the common case: nothing to do
    out = []
    for char in text:
        if char in "\n\t" or unsafe_character(char, multiline=True) is None:
            out.append(char)
        else:
            out.append(f"\\u{ord(char):04x}")
    return "".join(out)


class EscapingWriter(io.TextIOBase):
    """A text stream that writes `escape(text)` to the stream it wraps."""

    def __init__(self, inner: TextIO) -> None:
        super().__init__()
        self._inner = inner

    def write(self, text: str) -> int:
        self._inner.write(escape(text))
        return len(text)

    def flush(self) -> None:
        self._inner.flush()

    def isatty(self) -> bool:
        return self._inner.isatty()

    def fileno(self) -> int:
        return self._inner.fileno()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._inner.encoding

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return self._inner.errors


def install() -> None:
    """Escape everything this process writes to stdout and stderr from now on."""
    if not isinstance(sys.stdout, EscapingWriter):
        sys.stdout = EscapingWriter(sys.stdout)
    if not isinstance(sys.stderr, EscapingWriter):
        sys.stderr = EscapingWriter(sys.stderr)
