"""Tokenizer: the HF `tokenizers` fast tokenizer of a model folder or a GGUF file.

Padding is left to the data pipeline (it pads to its own bucket lengths), so
any padding or truncation fixed inside tokenizer.json is switched off; the
requested max_length is applied per call.

A GGUF file has no tokenizer.json: `Tokenizer.from_gguf` wraps the tokenizer
that fjft.gguf_tokenizer rebuilds from its tokenizer.ggml.* metadata, and
`apply_chat_template` and `encode_chat` render the model's Jinja chat template
the way transformers does (fjft.models.chat_template).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import tokenizers

import numpy as np

from fjft.models import chat_template as chat
from fjft.weights import gguf_tokenizer
from fjft.errors import FjftError

# Files that together let transformers' AutoTokenizer rebuild the tokenizer;
# save() copies those that exist. All are plain text/JSON.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
)

# Used when neither tokenizer.json's padding nor the HF config names one.
_PAD_TOKEN_GUESSES = ("[PAD]", "<pad>")

# The special-token roles a chat template sees, as transformers names them.
_SPECIAL_ROLES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token",
                  "cls_token", "mask_token")


def _token_from_files(folder: Path, role: str) -> str | None:
  """The `role` ("pad_token", ...) named by the folder's HF config files."""
  for name in ("special_tokens_map.json", "tokenizer_config.json"):
    path = folder / name
    if not path.is_file():
      continue
    try:
      tok = json.loads(path.read_text()).get(role)
    except (ValueError, AttributeError):
      continue
    if isinstance(tok, dict):  # {"content": "<pad>", "lstrip": ...}
      tok = tok.get("content")
    if isinstance(tok, str):
      return tok
  return None


def _chat_template_from_files(folder: Path) -> str | None:
  # transformers >= 4.43 may write the template to its own file.
  jinja = folder / "chat_template.jinja"
  if jinja.is_file():
    return jinja.read_text()
  path = folder / "tokenizer_config.json"
  try:
    template = json.loads(path.read_text()).get("chat_template")
  except (OSError, ValueError, AttributeError):
    return None
  if isinstance(template, list):  # [{"name": "default", "template": ...}, ...]
    named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
    template = named.get("default")
  return template if isinstance(template, str) else None


# -------------------------------------------------------------- Tokenizer ---


class Tokenizer:
  """Turns text into token ids with the model's special tokens."""

  def __init__(self, tok: tokenizers.Tokenizer,
               source_dir: str | os.PathLike[str] | None,
               pad_token: str | None = None, *,
               special_tokens: dict[str, str | None] | None = None,
               chat_template: str | None = None,
               config: dict[str, Any] | None = None):
    """Wraps a `tokenizers.Tokenizer`.

    Args:
      tok: the fast tokenizer (padding and truncation off).
      source_dir: the HF folder it came from (save() copies its files), or
        None when built in memory (save() writes the files).
      pad_token: the padding token's text.
      special_tokens: role ("bos_token", "eos_token", ...) -> token text.
      chat_template: the model's Jinja chat template, if any.
      config: extra tokenizer_config.json fields for save() (in-memory only).
    """
    self._tok = tok
    self._source_dir = None if source_dir is None else Path(source_dir)
    self._pad_token = pad_token
    self._special = {k: v for k, v in (special_tokens or {}).items() if v is not None}
    self.chat_template = chat_template
    self._config = dict(config or {})
    # enable_truncation mutates the tokenizer; a lock keeps concurrent
    # callers with different max_length from seeing each other's setting.
    self._lock = threading.Lock()
    self._max_length: int | None = None
    self._eot = None                    # the end-of-turn pattern, built on first use
    self._template_overridden = False   # chat_template is not the source folder's

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
    pad_token = pad_token or _token_from_files(folder, "pad_token")
    tok.no_padding()
    tok.no_truncation()
    special = {role: _token_from_files(folder, role) for role in _SPECIAL_ROLES}
    return cls(tok, folder, pad_token, special_tokens=special,
               chat_template=_chat_template_from_files(folder))

  @classmethod
  def from_gguf(cls, meta: dict[str, Any], chat_template: str | None) -> Tokenizer:
    """Builds the tokenizer a GGUF file describes.

    Args:
      meta: the file's tokenizer.ggml.* metadata (GGUFModel.tokenizer_meta):
        byte-level BPE tokens and merges ("gpt2") or sentencepiece tokens and
        scores ("llama"), token types (control tokens become special tokens),
        bos/eos/unk/padding ids and add_bos/add_eos flags.
      chat_template: tokenizer.chat_template, or None.

    Raises:
      FjftError: the metadata describes a tokenizer fjft cannot build (e.g. a
        't5' unigram vocabulary) or lacks what its kind needs.
    """
    built = gguf_tokenizer.build(meta)
    special = built.special
    # Batches need some padding id; their masks hide it, so EOS serves when
    # the file names none (the usual choice for decoder LMs).
    pad = special["pad_token"] or special["eos_token"]
    config = {"add_bos_token": built.add_bos, "add_eos_token": built.add_eos}
    return cls(built.tok, None, pad, special_tokens={**special, "pad_token": pad},
               chat_template=chat_template, config=config)

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

  def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
    """Token ids of one text, untruncated; the model's BOS/EOS framing if asked."""
    return self._encoding(text, add_special_tokens).ids

  def _encoding(self, text: str, add_special_tokens: bool) -> tokenizers.Encoding:
    # untruncated: encode_batch's per-call max_length is switched off first
    with self._lock:
      if self._max_length is not None:
        self._tok.no_truncation()
        self._max_length = None
      return self._tok.encode(text, add_special_tokens=add_special_tokens)

  def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
    """The text of token ids (special tokens such as <|im_end|> left out if asked)."""
    return self._tok.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

  def apply_chat_template(self, messages: list[dict[str, Any]],
                          add_generation_prompt: bool = True) -> str:
    """Renders a conversation with the model's chat template, as transformers does.

    Args:
      messages: [{"role": "system" | "user" | "assistant", "content": str}, ...].
      add_generation_prompt: end with the header that starts the assistant's turn.

    Returns:
      The prompt text; it already holds the special tokens the template writes,
      so encode it with add_special_tokens=False.

    Raises:
      FjftError: the model has no chat template, or it is not valid Jinja.
      DataError: the template rejects the conversation (raise_exception).
    """
    text, _ = chat.render(self._template(), messages, add_generation_prompt=add_generation_prompt,
                          special=self._special)
    return text

  def encode_chat(self, messages: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """(token ids, which of them are assistant replies) of a whole conversation.

    The ids are transformers' `apply_chat_template(messages, tokenize=True)`: the
    conversation rendered once and tokenized once (pieces tokenized apart can merge
    differently at their seams). A token is a reply's when its characters overlap a
    reply span (fjft.models.chat_template.reply_spans), as transformers' assistant
    masks are computed.
    """
    text, spans = chat.reply_spans(self._template(), messages, self._special,
                                   self._end_of_turn())
    encoding = self._encoding(text, add_special_tokens=False)
    mask = np.zeros(len(encoding.ids), bool)
    k = 0
    for t, (start, end) in enumerate(encoding.offsets):
      while k < len(spans) and start >= spans[k][1]:
        k += 1
      if k == len(spans):
        break
      mask[t] = end > spans[k][0]
    return np.asarray(encoding.ids, np.int32), mask

  def with_chat_template(self, source: str) -> Tokenizer:
    """This tokenizer with another chat template (a run's data.chat_template); save()
    then writes that template into the files it saves."""
    chat.compile_template(source)  # a template that does not compile fails here, once
    other = Tokenizer(self._tok, self._source_dir, self._pad_token,
                      special_tokens=self._special, chat_template=source, config=self._config)
    other._template_overridden = True
    return other

  def _template(self) -> str:
    if self.chat_template is None:
      raise FjftError("this model has no chat template")
    return self.chat_template

  def _end_of_turn(self):
    if self._eot is None:
      special = [t.content for t in self._tok.get_added_tokens_decoder().values() if t.special]
      self._eot = chat.end_of_turn_pattern(special, self._special.get("eos_token"))
    return self._eot

  def _id_of(self, role: str) -> int | None:
    tok = self._special.get(role)
    return None if tok is None else self._tok.token_to_id(tok)

  @property
  def bos_id(self) -> int | None:
    return self._id_of("bos_token")

  @property
  def eos_id(self) -> int | None:
    return self._id_of("eos_token")

  @property
  def pad_id(self) -> int:
    for tok in (self._pad_token, *_PAD_TOKEN_GUESSES):
      if tok is not None and (i := self._tok.token_to_id(tok)) is not None:
        return i
    raise FjftError(f"{self._source_dir or 'the tokenizer'}: the tokenizer"
                    " defines no padding token")

  @property
  def vocab_size(self) -> int:
    return self._tok.get_vocab_size(with_added_tokens=True)

  def save(self, out_dir: str | os.PathLike[str]) -> None:
    """Writes the tokenizer so transformers' AutoTokenizer.from_pretrained(out_dir) loads it.

    A tokenizer from an HF folder has its files copied verbatim (so
    AutoTokenizer behaves exactly as on the original folder); one built in
    memory (from GGUF) gets tokenizer.json, tokenizer_config.json (special
    tokens, chat template) and special_tokens_map.json written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if self._source_dir is not None:
      for name in TOKENIZER_FILES:
        src, dst = self._source_dir / name, out / name
        if src.is_file() and not (dst.exists() and dst.samefile(src)):
          shutil.copyfile(src, dst)
      if self._template_overridden:
        self._write_template(out)
      return
    with self._lock:
      # Truncation set by encode_batch is a per-call setting, not the model's.
      if self._max_length is not None:
        self._tok.no_truncation()
        self._max_length = None
      self._tok.save(str(out / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast",
              "clean_up_tokenization_spaces": False, **self._config, **self._special}
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False))
    (out / "special_tokens_map.json").write_text(json.dumps(self._special, indent=2,
                                                            ensure_ascii=False))
    if self.chat_template is not None:
      self._write_template(out)

  def _write_template(self, out: Path) -> None:
    # chat_template.jinja is what transformers (>= 4.43) and fjft read first; the copy
    # in tokenizer_config.json is for older readers, so both say the same.
    (out / "chat_template.jinja").write_text(self.chat_template)
    path = out / "tokenizer_config.json"
    config = json.loads(path.read_text()) if path.is_file() else {}
    config["chat_template"] = self.chat_template
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False))
