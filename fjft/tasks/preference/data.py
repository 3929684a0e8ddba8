"""Reads preference pairs into train/dev/test: a prompt (a chat) and two replies, the
chosen and the rejected, each rendered and tokenized as the LM task renders a chat.

A row is `prompt` / `chosen` / `rejected` (texts, or message lists as in Hugging Face
preference data sets, where chosen and rejected may hold the whole conversation), or only
`chosen` / `rejected` as two whole dialogues that share every turn but the last reply:
Anthropic HH's "\\n\\nHuman: ... \\n\\nAssistant: ..." text, or message lists. They are
split at the last assistant turn; a pair whose prefixes differ, or whose last turn is not
the assistant's, is a bad row (data.on_bad_row) with its file and line.

A pair longer than data.max_length keeps the end of its prompt (what the replies answer)
and, if the replies alone are too long, the start of each reply; both are counted in the
data report. Identical pairs are dropped as every task drops repeats (fjft.data.dedup), and
dev/test are a hashed split of the pairs (fjft.data.splits.hashed_choice).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import re
import types
from typing import Any

import numpy as np

from fjft.data import dedup, packing, readers
from fjft.data import report as report_lib
from fjft.data import splits as splits_lib
from fjft.errors import DataError
from fjft.tasks.lm import data as lm_data

MIN_PAIRS = 500      # fewer train pairs than this rarely move a model's preferences
# Anthropic HH's turn markers.
_HH_TURN = re.compile(r"\n\n(Human|Assistant): ")
_HH_ROLES = {"Human": "user", "Assistant": "assistant"}


@dataclasses.dataclass(frozen=True)
class Pair:
  prompt: tuple          # the messages before the replies, as ((role, content), ...)
  chosen: str
  rejected: str
  where: str


@dataclasses.dataclass
class EncodedPair:
  """Both sequences of a pair: ids and the loss mask of the reply (and its end of turn)."""
  ids: tuple[np.ndarray, np.ndarray]         # chosen, rejected
  mask: tuple[np.ndarray, np.ndarray]
  where: str

  def key(self):
    return tuple(a.tobytes() for a in self.ids)

  def chosen_example(self) -> packing.LMExample:
    """The prompt and the chosen reply as an LM example (generation metrics' reference)."""
    return packing.LMExample(self.ids[0], self.mask[0], self.where)


@dataclasses.dataclass
class PreferenceSplits:
  train: list[EncodedPair]
  dev: list[EncodedPair]
  test: list[EncodedPair]
  texts: dict[str, list[Pair]]   # split -> the pairs as text (the TF-IDF baseline)
  report: dict


def hh_messages(text: str) -> list[dict[str, str]] | None:
  """The turns of an HH dialogue ("\\n\\nHuman: ...\\n\\nAssistant: ..."), or None when
  the text is not one."""
  parts = _HH_TURN.split(text)
  if len(parts) < 3 or parts[0].strip():
    return None
  return [{"role": _HH_ROLES[role], "content": content.strip()}
          for role, content in zip(parts[1::2], parts[2::2])]


def _turns(value: Any, where: str, what: str) -> list[dict[str, str]]:
  """A column's messages: an HH dialogue or plain text (one assistant reply), or a list."""
  if isinstance(value, str):
    turns = hh_messages(value)
    return turns if turns is not None else [{"role": "assistant", "content": value}]
  if isinstance(value, list) and value and all(
      isinstance(m, dict) and m.get("role") in packing.ROLES and isinstance(m.get("content"), str)
      for m in value):
    return [{"role": m["role"], "content": m["content"]} for m in value]
  raise DataError(f"{where}: {what} must be a text or a non-empty list of messages with a "
                  f"role ({', '.join(packing.ROLES)}) and a string content")


def to_pair(obj: Any, where: str, cfg) -> Pair:
  """The Pair of one row, or DataError saying what is wrong with it."""
  if not isinstance(obj, dict):
    raise DataError(f"{where}: not a JSON object")
  for column in (cfg.chosen_column, cfg.rejected_column):
    if column not in obj:
      raise DataError(f"{where}: no {column!r} column (columns: {', '.join(map(str, obj))})")
  chosen = _turns(obj[cfg.chosen_column], where, cfg.chosen_column)
  rejected = _turns(obj[cfg.rejected_column], where, cfg.rejected_column)
  prompt_value = obj.get(cfg.prompt_column)
  if prompt_value is not None:
    prompt = ([{"role": "user", "content": prompt_value}] if isinstance(prompt_value, str)
              else _turns(prompt_value, where, cfg.prompt_column))
    # a reply that holds the whole conversation repeats the prompt: keep its last turn
    chosen, rejected = prompt + chosen[-1:], prompt + rejected[-1:]
  for side, turns in (("chosen", chosen), ("rejected", rejected)):
    if turns[-1]["role"] != "assistant":
      raise DataError(f"{where}: the {side} dialogue does not end with an assistant reply")
  if chosen[:-1] != rejected[:-1]:
    raise DataError(f"{where}: the chosen and rejected dialogues differ before their last "
                    "reply, so they are not two replies to one prompt")
  if not chosen[:-1]:
    raise DataError(f"{where}: no prompt before the replies (give a "
                    f"{cfg.prompt_column!r} column or whole dialogues)")
  if chosen[-1]["content"] == rejected[-1]["content"]:
    raise DataError(f"{where}: the chosen and rejected replies are the same text")
  return Pair(tuple((m["role"], m["content"]) for m in chosen[:-1]), chosen[-1]["content"],
              rejected[-1]["content"], where)


def read_pairs(path: str, cfg, stats: readers.BadRowStats) -> list[Pair]:
  pairs = []
  for where, obj in readers.read_table(path, {}, on_bad_row=cfg.on_bad_row, stats=stats):
    if isinstance(obj, dict) and readers.file_ext(path) in (".csv", ".tsv", ".parquet"):
      obj = {k: _maybe_json(v) for k, v in obj.items()}
    try:
      pairs.append(to_pair(obj, where, cfg))
    except DataError as e:
      readers.bad_row(where, "bad pair", str(e).removeprefix(f"{where}: "),
                      on_bad_row=cfg.on_bad_row, stats=stats)
  return pairs


def _maybe_json(value: Any) -> Any:
  # A csv/tsv cell holding a message list is JSON text.
  if isinstance(value, str) and value.lstrip().startswith("[{"):
    try:
      return json.loads(value)
    except ValueError:
      return value
  return value


def encode(tokenizer, pair: Pair, cfg) -> tuple[EncodedPair, bool, bool]:
  """(both replies rendered after the prompt, whether the prompt's start was cut, whether
  a reply's end was): too long, the prompt keeps its end, then the replies their start."""
  prompt = [{"role": r, "content": c} for r, c in pair.prompt]
  sides = []
  for reply in (pair.chosen, pair.rejected):
    if cfg.use_chat_template:
      ex = packing.from_chat(tokenizer, prompt + [{"role": "assistant", "content": reply}],
                             pair.where)
    else:
      if len(prompt) != 1:
        raise DataError(f"{pair.where}: a multi-turn prompt needs the chat template "
                        "(data.use_chat_template)")
      ex = packing.from_prompt_response(tokenizer, prompt[0]["content"], reply, pair.where,
                                        use_chat_template=False)
    # The chat's earlier assistant turns are prompt: only the last reply is scored.
    first = last_run_start(ex.loss_mask)
    sides.append((ex.ids[:first], ex.ids[first:], ex.loss_mask[first:]))
  limit = cfg.max_length
  longest = max(len(reply) for _, reply, _ in sides)
  ids, masks = [], []
  cut_prompt = cut_reply = False
  for prompt_ids, reply, reply_mask in sides:
    keep = min(len(prompt_ids), max(limit - longest, limit // 2))
    cut_prompt |= keep < len(prompt_ids)
    room = limit - keep
    cut_reply |= len(reply) > room
    ids.append(np.concatenate([prompt_ids[len(prompt_ids) - keep:], reply[:room]]))
    masks.append(np.concatenate([np.zeros(keep, bool), reply_mask[:room]]))
  return EncodedPair((ids[0], ids[1]), (masks[0], masks[1]), pair.where), cut_prompt, cut_reply


def last_run_start(mask: np.ndarray) -> int:
  """Where the last run of True in `mask` starts (len(mask) when there is none): the chat
  renderer marks every assistant turn, and the pair's reply is the last."""
  starts = np.flatnonzero(mask & ~np.r_[False, mask[:-1]])
  return int(starts[-1]) if len(starts) else len(mask)


def load_splits(cfg, tokenizer, model_name: str) -> tuple[PreferenceSplits, Any]:
  """(the splits, the tokenizer they were rendered with)."""
  readers.check_on_bad_row(cfg.on_bad_row)
  if cfg.use_chat_template:
    view = types.SimpleNamespace(format="chat", chat_template=cfg.chat_template,
                                 use_chat_template=True)
    tokenizer = lm_data.chat_tokenizer(view, tokenizer, model_name)
  path = os.path.expanduser(cfg.path)
  if not os.path.exists(path):
    raise DataError(f"data.path: {cfg.path} does not exist")
  files = splits_lib.split_files(path) if os.path.isdir(path) else {"train": path}
  stats = {name: readers.BadRowStats() for name in ("train", "dev", "test")}
  pairs = {name: read_pairs(file, cfg, stats[name]) for name, file in files.items()}
  rows_read = {name: len(p) + stats[name].total for name, p in pairs.items()}
  sources = dict(files)
  for name, fraction in (("test", cfg.test_fraction), ("dev", cfg.dev_fraction)):
    if name in pairs:
      continue
    train = pairs["train"]
    k = splits_lib.held_out_count(len(train), fraction)
    if not 0 < k < len(train):
      raise DataError(f"{files['train']}: cannot hold out data.{name}_fraction={fraction} of "
                      f"{len(train)} pairs as {name} (add a {name} file or change it)")
    chosen = splits_lib.hashed_choice([json.dumps([p.prompt, p.chosen, p.rejected])
                                       for p in train], fraction, cfg.split_seed,
                                      salt=f"{name}\0")
    pairs[name] = [p for i, p in enumerate(train) if i in chosen]
    pairs["train"] = [p for i, p in enumerate(train) if i not in chosen]
    rows_read[name] = len(pairs[name])
    rows_read["train"] -= len(pairs[name])
    sources[name] = f"{files['train']} (a hashed {fraction:g} of its pairs)"
  encoded, cuts = {}, {}
  for name in ("train", "dev", "test"):
    encoded[name], cuts[name] = [], collections.Counter()
    for pair in pairs[name]:
      try:
        one, cut_prompt, cut_reply = encode(tokenizer, pair, cfg)
        encoded[name].append(one)
        cuts[name].update(prompts_shortened=cut_prompt, replies_cut=cut_reply)
      except DataError as e:   # e.g. a conversation the chat template rejects
        readers.bad_row(pair.where, "not rendered by the chat template",
                        str(e).removeprefix(f"{pair.where}: "), on_bad_row=cfg.on_bad_row,
                        stats=stats[name])
  removed = {name: readers.BadRowStats() for name in encoded}
  if cfg.drop_duplicates:
    encoded = dedup.dedup_splits(encoded, EncodedPair.key, lambda p: p.where, removed,
                                 what="pair")
  for name, kept in encoded.items():
    if not kept:
      raise DataError(f"{sources[name]}: the {name} split has no pairs left")
  kept_where = {name: {p.where for p in kept} for name, kept in encoded.items()}
  texts = {name: [p for p in pairs[name] if p.where in kept_where[name]] for name in pairs}
  report = _report(cfg, sources, rows_read, stats, encoded, removed, cuts)
  return PreferenceSplits(encoded["train"], encoded["dev"], encoded["test"], texts, report), \
      tokenizer


def _report(cfg, sources, rows_read, stats, encoded, removed, cuts) -> dict:
  # (cuts count the pairs read, before duplicates were dropped)
  splits = {name: report_lib.split_entry(
      sources[name], rows_read[name], len(kept), stats[name], removed[name],
      prompts_shortened=cuts[name]["prompts_shortened"], replies_cut=cuts[name]["replies_cut"])
            for name, kept in encoded.items()}
  warnings = []
  if len(encoded["train"]) < MIN_PAIRS:
    warnings.append(f"only {len(encoded['train'])} training pairs: preference tuning usually "
                    f"needs {MIN_PAIRS}+ (thousands of pairs) to move a model's preferences")
  lengths = {name: report_lib.length_stats((len(i) for p in kept for i in p.ids), "tokens")
             for name, kept in encoded.items()}
  return report_lib.build_report("preference", source=cfg.path,
                                 settings=report_lib.settings_of(cfg), splits=splits,
                                 lengths=lengths, warnings=warnings)


def report_lines(report: dict):
  """The preference part of format_report."""
  def split_lines(s):
    out = []
    if s.get("prompts_shortened") or s.get("replies_cut"):
      out.append(f"to fit data.max_length: {report_lib.plural(s['prompts_shortened'], 'pair')} "
                 f"with the prompt's start cut, {s['replies_cut']} with replies cut")
    return out
  return "(pairs: a prompt, a chosen and a rejected reply)", [], split_lines
