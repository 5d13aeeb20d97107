"""Token ids -> text a person can read (pure: works on any tokenizer object, imports no training stack).

A byte-level tokenizer decodes any id sequence, but a sequence that stops inside a multi-byte character, or holds
bytes that are no UTF-8 at all, decodes to U+FFFD, and single control bytes decode to control characters. A model
early in its training samples such tokens freely, so chat answers and predictions go through here:
- `printable(text)` drops U+FFFD and control characters (newline and tab stay);
- `decode_text(tokenizer, ids)` decodes a whole answer (special tokens skipped unless asked) and keeps it printable;
- `StreamDecoder` does the same token by token: `push(ids)` returns only whole characters, holding back an
  unfinished one until the next token completes it, and `flush()` ends the answer. The pieces add up to
  `decode_text` of all the ids.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from typing import Any

REPLACEMENT = "\ufffd"
_KEPT_CONTROLS = frozenset("\n\t")


def printable(text: str) -> str:
    """`text` without replacement characters and without control characters other than newline and tab."""
    return "".join(
        ch for ch in text if ch != REPLACEMENT and (ch in _KEPT_CONTROLS or unicodedata.category(ch) != "Cc")
    )


def decode_text(tokenizer: Any, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
    """The readable text of `ids`."""
    return printable(tokenizer.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens))


class StreamDecoder:
    """Incremental `decode_text`: feed generated ids as they come, get back only the text they complete."""

    def __init__(self, tokenizer: Any, skip_special_tokens: bool = True) -> None:
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self.ids: list[int] = []
        self.sent = 0  # characters of the raw decoded text already handed out

    def _text(self) -> str:
        return self.tokenizer.decode(self.ids, skip_special_tokens=self.skip_special_tokens)

    def push(self, ids: Iterable[int]) -> str:
        """Add generated ids; returns the new whole characters (possibly "")."""
        self.ids.extend(int(i) for i in ids)
        text = self._text()
        # A trailing U+FFFD may be a character whose last bytes are still to come: wait for the next token.
        end = len(text.rstrip(REPLACEMENT))
        if end <= self.sent:
            return ""
        piece, self.sent = text[self.sent : end], end
        return printable(piece)

    def flush(self) -> str:
        """The rest once generation has ended (an unfinished character at the very end is dropped)."""
        text = self._text()
        piece, self.sent = text[self.sent :], len(text)
        return printable(piece)
