"""fjft.data.clean.normalize_text."""

import pytest

from fjft.data.clean import normalize_text


@pytest.mark.parametrize("raw,expected", [
    ("plain text", "plain text"),
    ("cafe\u0301", "caf\u00e9"),  # NFC composes e + combining acute
    ("a\x00b\x07c\x7f", "abc"),  # Cc controls removed
    ("zero\u200bwidth\u00adsoft\ufeffbom", "zerowidthsoftbom"),  # Cf format characters
    ("  a\t\tb\n\nc\u00a0d\u3000e\u2028f  ", "a b c d e f"),  # every whitespace run -> " "
    ("line\r\nbreak\rhere", "line break here"),  # a lone \r separates words too
    ("a \u200b b", "a b"),  # removing a character does not leave a double space
    ("lone \ud800surrogate", "lone surrogate"),
    ("", ""),
    (" \t\n\u00a0", ""),
])
def test_normalize_text(raw, expected):
  assert normalize_text(raw) == expected


def test_lowercase_and_idempotent():
  s = normalize_text("  The CAFE\u0301\tIs OPEN ", lowercase=True)
  assert s == "the caf\u00e9 is open"
  assert normalize_text(s, lowercase=True) == s
  assert normalize_text("Keep Case") == "Keep Case"
