"""Text normalization applied to every example before dedup, splitting and tokenizing."""

from __future__ import annotations

import re
import unicodedata

_WHITESPACE_RUN = re.compile(r"\s+")  # str pattern: Unicode whitespace, incl. nbsp, U+3000
# Cc/Cf: control and format characters (zero-width space, soft hyphen, BOM, bidi marks).
# Cs: lone surrogates (from JSON "\ud800" escapes) cannot be encoded and would break the
# tokenizer later.
_REMOVED_CATEGORIES = frozenset(("Cc", "Cf", "Cs"))


def normalize_text(s: str, *, lowercase: bool = False) -> str:
  """Unicode NFC, control/format characters removed, whitespace runs -> " ", stripped.

  Whitespace characters (tab, newline, nbsp, ...) are never removed, only collapsed, so
  "a\\tb" becomes "a b", not "ab". Note that zero-width joiners are format characters
  and so are removed, as BERT-style tokenizers do.
  """
  if lowercase:
    s = s.lower()
  s = unicodedata.normalize("NFC", s)
  if not s.isprintable():  # fast path: printable text has no Cc/Cf/Cs characters
    s = "".join(c for c in s if c.isprintable() or c.isspace()
                or unicodedata.category(c) not in _REMOVED_CATEGORIES)
  return _WHITESPACE_RUN.sub(" ", s).strip()
