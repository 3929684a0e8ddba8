"""Tokenizer: the HF `tokenizers` fast tokenizer of a model folder.

Padding is left to the data pipeline (it pads to its own bucket lengths), so
any padding or truncation fixed inside tokenizer.json is switched off; the
requested max_length is applied per call.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import tokenizers

from fjft.errors import FjftError

# Files that together let transformers' AutoTokenizer rebuild the tokenizer;
# save() copies those that exist. All are plain text/JSON.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
)

# Used when neither tokenizer.json's padding nor the HF config names one.
_PAD_TOKEN_GUESSES = ("[PAD]", "<pad>")


def _pad_token_from_files(folder: Path) -> str | None:
  for name in ("special_tokens_map.json", "tokenizer_config.json"):
    path = folder / name
    if not path.is_file():
      continue
    try:
      tok = json.loads(path.read_text()).get("pad_token")
    except (ValueError, AttributeError):
      continue
    if isinstance(tok, dict):  # {"content": "<pad>", "lstrip": ...}
      tok = tok.get("content")
    if isinstance(tok, str):
      return tok
  return None


class Tokenizer:
  """Turns text into token ids with the model's special tokens."""

  def __init__(self, tok: tokenizers.Tokenizer, source_dir: str | os.PathLike[str],
               pad_token: str | None = None):
    self._tok = tok
    self._source_dir = Path(source_dir)
    self._pad_token = pad_token
    # enable_truncation mutates the tokenizer; a lock keeps concurrent
    # callers with different max_length from seeing each other's setting.
    self._lock = threading.Lock()
    self._max_length: int | None = None

  @classmethod
  def from_dir(cls, path: str | os.PathLike[str]) -> Tokenizer:
    """Loads `path/tokenizer.json` (an HF model folder)."""
    folder = Path(path)
    file = folder / "tokenizer.json"
    if not file.is_file():
      raise FjftError(f"{folder}: no tokenizer.json; fjft needs a 'fast'"
                      " tokenizer file from a Hugging Face model folder")
    try:
      tok = tokenizers.Tokenizer.from_file(str(file))
    except Exception as e:  # The Rust parser raises a bare Exception.
      raise FjftError(f"{file}: cannot load tokenizer: {e}") from e
    padding = tok.padding
    pad_token = padding["pad_token"] if padding else None
    pad_token = pad_token or _pad_token_from_files(folder)
    tok.no_padding()
    tok.no_truncation()
    return cls(tok, folder, pad_token)

  def encode_batch(self, texts: list[str], max_length: int) -> list[list[int]]:
    """Token ids per text: [CLS] ... [SEP] (the model's own template).

    Longer texts are truncated to max_length tokens, special tokens included,
    so the final [SEP] is kept.
    """
    if max_length < 2:
      raise FjftError(f"max_length must be at least 2 (room for the special"
                      f" tokens), got {max_length}")
    with self._lock:
      if self._max_length != max_length:
        self._tok.enable_truncation(max_length)
        self._max_length = max_length
      encodings = self._tok.encode_batch(list(texts), add_special_tokens=True)
    return [e.ids for e in encodings]

  @property
  def pad_id(self) -> int:
    for tok in (self._pad_token, *_PAD_TOKEN_GUESSES):
      if tok is not None and (i := self._tok.token_to_id(tok)) is not None:
        return i
    raise FjftError(f"{self._source_dir}: the tokenizer defines no padding"
                    " token")

  @property
  def vocab_size(self) -> int:
    return self._tok.get_vocab_size(with_added_tokens=True)

  def save(self, out_dir: str | os.PathLike[str]) -> None:
    """Copies the tokenizer files of the source folder into out_dir.

    The copies are verbatim, so transformers' AutoTokenizer.from_pretrained
    (out_dir) behaves exactly as on the original folder.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
      src, dst = self._source_dir / name, out / name
      if src.is_file() and not (dst.exists() and dst.samefile(src)):
        shutil.copyfile(src, dst)
