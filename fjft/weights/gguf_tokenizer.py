"""Rebuilds a GGUF file's tokenizer from its tokenizer.ggml.* metadata.

A GGUF has no tokenizer.json; llama.cpp stores the vocabulary, merges or
scores, token types and special-token ids as metadata. `build` turns them into
a `tokenizers.Tokenizer` that encodes as transformers' GGUF loading does:

  * "gpt2": byte-level BPE (SmolLM, Qwen2, Llama 3, GPT-2 files), split by the
    pre-tokenizer regex that tokenizer.ggml.pre names;
  * "llama": sentencepiece-style BPE (Llama 2, Mistral v0.1, TinyLlama files):
    "▁" marks spaces, unknown characters fall back to <0xNN> byte tokens, and
    merges are derived from the token scores when the file lists none.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import tokenizers
from tokenizers import decoders, models, pre_tokenizers, processors

from fjft.errors import FjftError

# tokenizer.ggml.token_type values (llama.cpp's llama_token_type).
_UNKNOWN, _CONTROL, _USER_DEFINED = 2, 3, 4

# sentencepiece's visible stand-in for a space.
_SPACE = "\u2581"


@dataclasses.dataclass(frozen=True)
class GGUFTokenizer:
  """What `build` makes of the metadata.

  Attributes:
    tok: the fast tokenizer, with the BOS/EOS framing the file asks for.
    special: role ("bos_token", "eos_token", "unk_token", "pad_token") ->
      token text, None where the file names none.
    add_bos: whether encoding with special tokens prepends BOS.
    add_eos: whether encoding with special tokens appends EOS.
  """
  tok: tokenizers.Tokenizer
  special: dict[str, str | None]
  add_bos: bool
  add_eos: bool


def build(meta: dict[str, Any]) -> GGUFTokenizer:
  """The tokenizer that tokenizer.ggml.* metadata describes.

  Args:
    meta: the file's tokenizer.ggml.* metadata, keys as in the file.

  Raises:
    FjftError: the tokenizer model is neither "gpt2" nor "llama", or the
      metadata lacks what that model needs.
  """
  kind = meta.get("tokenizer.ggml.model")
  if kind == "gpt2":
    tok = _byte_level_bpe(meta)
    # A byte-level vocabulary only adds BOS where the file says so.
    add_bos_default = False
  elif kind == "llama":
    tok = _sentencepiece_bpe(meta)
    # Older files carry no flag; llama.cpp (and transformers) then add BOS.
    add_bos_default = True
  else:
    raise FjftError(f"GGUF tokenizer model {kind!r} is not supported; fjft builds"
                    " byte-level BPE ('gpt2') and sentencepiece BPE ('llama')"
                    " tokenizers only")
  special = {"bos_token": _token(meta, "bos_token_id"),
             "eos_token": _token(meta, "eos_token_id"),
             "unk_token": _token(meta, "unknown_token_id"),
             "pad_token": _token(meta, "padding_token_id")}
  _add_special_tokens(tok, meta, kind, special)
  add_bos = bool(meta.get("tokenizer.ggml.add_bos_token", add_bos_default))
  add_eos = bool(meta.get("tokenizer.ggml.add_eos_token", False))
  _framing(tok, special["bos_token"], special["eos_token"], add_bos, add_eos)
  return GGUFTokenizer(tok, special, add_bos, add_eos)


def _token(meta: dict[str, Any], key: str) -> str | None:
  i = meta.get(f"tokenizer.ggml.{key}")
  tokens = meta.get("tokenizer.ggml.tokens") or []
  return tokens[i] if isinstance(i, int) and 0 <= i < len(tokens) else None


def _tokens(meta: dict[str, Any]) -> list[str]:
  tokens = meta.get("tokenizer.ggml.tokens")
  if not tokens:
    raise FjftError("GGUF tokenizer metadata lacks tokenizer.ggml.tokens")
  return list(tokens)


def _file_merges(meta: dict[str, Any]) -> list[tuple[str, str]] | None:
  merges = meta.get("tokenizer.ggml.merges")
  if merges is None:
    return None
  pairs = []
  for m in merges:
    left, sep, right = m.partition(" ")
    if not sep:
      raise FjftError(f"GGUF tokenizer merge {m!r} is not two tokens")
    pairs.append((left, right))
  return pairs


def _add_special_tokens(tok: tokenizers.Tokenizer, meta: dict[str, Any], kind: str,
                        special: dict[str, str | None]) -> None:
  """Makes control and user-defined tokens match whole in any text, as llama.cpp does."""
  tokens = meta["tokenizer.ggml.tokens"]
  kinds = meta.get("tokenizer.ggml.token_type") or []
  vocab = tok.get_vocab(with_added_tokens=False)
  if kind == "gpt2":
    # Every real byte-level token is spelled in the byte alphabet; a control
    # token that is not is a converter mislabel with no id of its own.
    letters = set(_byte_alphabet())
    control = [t for t, k in zip(tokens, kinds) if k == _CONTROL and set(t) <= letters]
  else:
    # The file's <unk>, <s>, </s> are special too, whatever their type says.
    control = [t for t, k in zip(tokens, kinds) if k in (_CONTROL, _UNKNOWN)]
    control += [t for t in special.values() if t is not None]
  user = [tokenizers.AddedToken(t, special=False, normalized=False)
          for t, k in zip(tokens, kinds) if k == _USER_DEFINED and t in vocab]
  tok.add_special_tokens([tokenizers.AddedToken(t, special=True, normalized=False)
                          for t in dict.fromkeys(control)])
  tok.add_tokens(user)


def _framing(tok: tokenizers.Tokenizer, bos: str | None, eos: str | None,
             add_bos: bool, add_eos: bool) -> None:
  """Makes encode(add_special_tokens=True) add BOS / EOS as the GGUF asks."""
  first = [bos] if add_bos and bos is not None else []
  last = [eos] if add_eos and eos is not None else []
  if not first and not last:
    return
  single = " ".join([*first, "$A", *last])
  pair = " ".join([single, *(f"{t}:1" for t in first), "$B:1", *(f"{t}:1" for t in last)])
  used = {t: tok.token_to_id(t) for t in {*first, *last}}
  tok.post_processor = processors.TemplateProcessing(
      single=single, pair=pair, special_tokens=list(used.items()))


# -------------------------------------------------------- byte-level BPE ---


@functools.cache
def _byte_alphabet() -> tuple[str, ...]:
  """GPT-2's byte -> printable character table (index = byte value).

  Printable Latin-1 bytes stand for themselves; the other 68 bytes are moved,
  in order, to the characters from U+0100 on, so that every byte has a visible
  character and BPE never sees whitespace or control characters.
  """
  keep = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1),
          *range(0xAE, 0xFF + 1)]
  table, moved = {}, 0
  for b in range(256):
    if b in keep:
      table[b] = chr(b)
    else:
      table[b] = chr(0x100 + moved)
      moved += 1
  return tuple(table[b] for b in range(256))


# llama.cpp's pre-tokenizer splits (tokenizer.ggml.pre) that differ from
# GPT-2's; the vocabulary's merges were learned on text split this way.
_CONTRACTIONS = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
_LLAMA3_SPLIT = (_CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_SPLIT = (_CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_PRE_SPLITS = {"llama3": _LLAMA3_SPLIT, "llama-v3": _LLAMA3_SPLIT,
               "llama-bpe": _LLAMA3_SPLIT, "smaug-bpe": _LLAMA3_SPLIT,
               "qwen2": _QWEN2_SPLIT, "deepseek-r1-qwen": _QWEN2_SPLIT}
# These isolate every digit before GPT-2's split.
_DIGIT_SPLIT_PRES = ("smollm", "starcoder", "refact", "codeshell")


def _byte_level_pre_tokenizer(pre: str | None):
  byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
  if pre in _PRE_SPLITS:
    split = pre_tokenizers.Split(tokenizers.Regex(_PRE_SPLITS[pre]), behavior="isolated")
    return pre_tokenizers.Sequence(
        [split, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
  if pre in _DIGIT_SPLIT_PRES:
    return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
  return byte_level  # "gpt2", "default" and unknown names: GPT-2's own split.


def _byte_level_bpe(meta: dict[str, Any]) -> tokenizers.Tokenizer:
  """The byte-level BPE ("gpt2") tokenizer: byte-alphabet tokens and merges."""
  tokens = _tokens(meta)
  merges = _file_merges(meta)
  if merges is None:
    raise FjftError("GGUF tokenizer metadata lacks tokenizer.ggml.merges, which a"
                    " byte-level BPE ('gpt2') tokenizer needs")
  alphabet = _byte_alphabet()
  letters = set(alphabet)
  # Some converters store a token as its UTF-8 text rather than in the byte
  # alphabet; spell those in the alphabet so BPE can reach them.
  vocab = {t if set(t) <= letters else "".join(alphabet[b] for b in t.encode()): i
           for i, t in enumerate(tokens)}
  tok = tokenizers.Tokenizer(models.BPE(vocab=vocab, merges=merges, dropout=None,
                                        continuing_subword_prefix="",
                                        end_of_word_suffix="", fuse_unk=False))
  tok.pre_tokenizer = _byte_level_pre_tokenizer(meta.get("tokenizer.ggml.pre"))
  tok.decoder = decoders.ByteLevel()
  return tok


# ------------------------------------------------------ sentencepiece BPE ---


def _merges_from_scores(tokens: list[str], scores: list[float]) -> list[tuple[str, str]]:
  """BPE merges, best first, recovered from a sentencepiece vocabulary.

  sentencepiece BPE joins, at each step, the adjacent pair whose joined piece
  scores highest. A BPE model joins the pair with the earliest merge rule, so
  every split of every piece into two vocabulary pieces becomes a rule, ranked
  by the piece's score. Ties are broken as transformers breaks them (longer
  left, then longer right part first; then by the parts' ids), so that both
  pick the same rule where a piece can be reached two ways.
  """
  ids = {t: i for i, t in enumerate(tokens)}
  score_of = dict(zip(tokens, scores))
  rules = []
  for piece, score in score_of.items():
    splits = [(piece[:k], piece[k:]) for k in range(1, len(piece))
              if piece[:k] in ids and piece[k:] in ids]
    splits.sort(key=lambda lr: (ids[lr[0]], ids[lr[1]]))
    rules += [(-score, -len(left), -len(right), left, right) for left, right in splits]
  # Stable: rules that tie keep the order above.
  rules.sort(key=lambda r: r[:3])
  return [(left, right) for *_, left, right in rules]


def _sentencepiece_bpe(meta: dict[str, Any]) -> tokenizers.Tokenizer:
  """The sentencepiece-style ("llama") tokenizer: "▁" spaces, <0xNN> byte fallback."""
  tokens = _tokens(meta)
  merges = _file_merges(meta)
  if merges is None:
    scores = meta.get("tokenizer.ggml.scores")
    if scores is None or len(scores) != len(tokens):
      raise FjftError("GGUF tokenizer metadata lacks tokenizer.ggml.scores (one per"
                      " token), which a sentencepiece ('llama') tokenizer without"
                      " tokenizer.ggml.merges needs")
    merges = _merges_from_scores(tokens, [float(s) for s in scores])
  vocab = {t: i for i, t in enumerate(tokens)}
  # Characters with neither a piece nor a <0xNN> byte token become <unk>.
  unk = _token(meta, "unknown_token_id")
  tok = tokenizers.Tokenizer(models.BPE(vocab=vocab, merges=merges, dropout=None,
                                        unk_token=unk if unk in vocab else None,
                                        fuse_unk=True, byte_fallback=True))
  # sentencepiece's dummy prefix: a "▁" before the text, so its first word is
  # spelled like any other. Files from models trained without it say so;
  # transformers ignores that flag, llama.cpp (which made the file) honours it.
  prefix = bool(meta.get("tokenizer.ggml.add_space_prefix", True))
  # "first": only the text's start gets the prefix, not text after a special
  # token, as transformers' Llama tokenizer (legacy=False) does.
  tok.pre_tokenizer = pre_tokenizers.Metaspace(
      replacement=_SPACE, prepend_scheme="first" if prefix else "never", split=False)
  steps = [decoders.Replace(_SPACE, " "), decoders.ByteFallback(), decoders.Fuse()]
  if prefix:
    steps.append(decoders.Strip(content=" ", left=1))
  tok.decoder = decoders.Sequence(steps)
  return tok
