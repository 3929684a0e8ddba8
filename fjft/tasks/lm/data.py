"""Reads causal-LM data (plain text, prompt/response pairs, chats) into train/dev/test examples.

`data.path` is a file, or a folder with train.<ext> and optionally dev.<ext> / test.<ext>.
Without dev/test files they are held out deterministically: for plain text the tail of the
text (the last `test_fraction` of its lines is test, the `dev_fraction` before it dev), so
that what is scored comes after everything that trains; for pairs and chats a hashed split
that does not depend on row order (fjft.data.splits.hashed_choice).

With data.drop_duplicates (the default), an example identical to an earlier one of its split
(the same tokens and loss mask) is dropped from train and dev, and a train example also in
dev or test, or a dev example also in test, is dropped; test is kept as it is. Each is
counted in the data report (fjft.data.report), whose LM keys are format and, per split,
tokens and trained_tokens (printed by report_lines).
"""

from __future__ import annotations

import dataclasses
import json
import os

from fjft.data import dedup
from fjft.data import packing as lm
from fjft.data import readers
from fjft.data import report as report_lib
from fjft.data import splits as splits_lib
from fjft.errors import ConfigError, DataError, FjftError, os_error_text

FORMATS = ("text", "prompt_response", "parallel", "chat")
TEXT_EXTENSIONS = (".txt",)
MIN_TRAIN_TOKENS = 50_000


@dataclasses.dataclass
class LMSplits:
  train: list[lm.LMExample]
  dev: list[lm.LMExample]
  test: list[lm.LMExample]
  report: dict


@dataclasses.dataclass
class _Raw:
  """One split as read: examples, where they came from, what was dropped."""
  items: list          # texts (str), (prompt, response) pairs or message lists
  where: list[str]
  source: str
  stats: readers.BadRowStats = dataclasses.field(default_factory=readers.BadRowStats)
  rows_read: int | None = None  # rows (lines) read, bad ones included (default: as read)

  def __post_init__(self):
    if self.rows_read is None:
      self.rows_read = len(self.items) + self.stats.total


def load_lm_splits(data_cfg, tokenizer) -> LMSplits:
  fmt = data_cfg.format
  if fmt not in FORMATS:
    raise ConfigError(f"config field data.format must be one of {', '.join(FORMATS)}, "
                      f"got {fmt!r}")
  readers.check_on_bad_row(data_cfg.on_bad_row)
  path = os.path.expanduser(data_cfg.path)
  if fmt == "parallel":
    files = {"train": path}
  elif not os.path.exists(path):
    raise DataError(f"data.path: {data_cfg.path} does not exist")
  elif os.path.isdir(path):
    files = splits_lib.split_files(path, extensions=readers.SUPPORTED_EXTENSIONS + TEXT_EXTENSIONS)
  else:
    files = {"train": path}
  raw = {name: _read(file, data_cfg) for name, file in files.items()}
  for name, fraction in (("test", data_cfg.test_fraction), ("dev", data_cfg.dev_fraction)):
    if name not in raw:
      raw["train"], raw[name] = _hold_out(raw["train"], fraction, name, fmt, data_cfg.split_seed)
  out = {}
  for name in ("train", "dev", "test"):
    examples = _encode(raw[name], data_cfg, tokenizer)
    out[name] = [ex for ex in examples
                 if lm.check_length(ex, data_cfg.max_length, on_bad_row=data_cfg.on_bad_row,
                                    stats=raw[name].stats) is not None]
  removed = {name: readers.BadRowStats() for name in out}
  # A config.json written before the field existed lacks it, and meant no dedup.
  if getattr(data_cfg, "drop_duplicates", False):
    out = dedup.dedup_splits(out, lambda ex: (ex.ids.tobytes(), ex.loss_mask.tobytes()),
                             lambda ex: ex.where, removed)
  for name, kept in out.items():
    if not kept:
      raise DataError(f"{raw[name].source}: the {name} split has no examples left")
  return LMSplits(out["train"], out["dev"], out["test"], _report(data_cfg, raw, out, removed))


def _report(data_cfg, raw: dict[str, _Raw], out: dict[str, list[lm.LMExample]],
            removed: dict[str, readers.BadRowStats]) -> dict:
  splits = {name: report_lib.split_entry(
      raw[name].source, raw[name].rows_read, len(kept), raw[name].stats, removed[name],
      tokens=int(sum(len(e) for e in kept)),
      trained_tokens=int(sum(int(e.loss_mask[1:].sum()) for e in kept)))
            for name, kept in out.items()}
  train_tokens = splits["train"]["trained_tokens"]
  warnings = ([f"only {train_tokens} training tokens: fine-tuning usually needs "
               f"{MIN_TRAIN_TOKENS}+ (hundreds to thousands of good examples) to beat the "
               "pretrained model"] if train_tokens < MIN_TRAIN_TOKENS else [])
  lengths = {name: report_lib.length_stats((len(e) for e in kept), "tokens")
             for name, kept in out.items()}
  return report_lib.build_report("lm", source=data_cfg.path,
                                 settings=report_lib.settings_of(data_cfg), splits=splits,
                                 lengths=lengths, warnings=warnings, format=data_cfg.format)


def report_lines(report: dict):
  """The LM part of format_report: (what follows "data: <path> " on the header, lines under
  the header, split -> lines under it)."""
  head = f"format {report['format']!r}"
  if report["format"] == "text":
    head += f", one token stream cut into rows of {report['settings']['max_length']} tokens"
  return f"({head})", [], lambda s: [f"{s['tokens']} tokens, {s['trained_tokens']} of them trained"]


def _read(path: str, cfg) -> _Raw:
  ext = readers.file_ext(path)
  stats = readers.BadRowStats()
  if cfg.format == "parallel":
    return _read_parallel(path, cfg, stats)
  if cfg.format == "text" and ext in TEXT_EXTENSIONS:
    bad: dict[int, str] = {}
    lines = list(readers.decoded_lines(path, bad))
    for number, reason in bad.items():
      readers.bad_row(f"{path}:{number}", "undecodable bytes", reason,
                      on_bad_row=cfg.on_bad_row, stats=stats)
    keep = [(n, text) for n, text in lines if n not in bad]
    return _Raw([t for _, t in keep], [f"{path}:{n}" for n, _ in keep], path, stats)
  if ext in TEXT_EXTENSIONS:
    raise DataError(f"{path}: a .txt file is plain text; data.format={cfg.format!r} needs "
                    "jsonl, csv, tsv or parquet rows")
  if cfg.format == "chat":
    if ext not in (".jsonl", ".json"):
      raise DataError(f"{path}: chats are read from jsonl (one JSON object per line with a "
                      f"{cfg.messages_column!r} list), not {ext}")
    return _read_chats(path, cfg, stats)
  if cfg.format == "text":
    rows = readers.read_rows(path, text_column=cfg.text_column, label_column=None,
                             on_bad_row=cfg.on_bad_row, stats=stats)
    return _Raw([r.text + "\n" for r in rows], [r.where for r in rows], path, stats)
  rows = readers.read_rows(path, text_column=cfg.prompt_column, label_column=cfg.response_column,
                           on_bad_row=cfg.on_bad_row, stats=stats)
  return _Raw([(r.text, r.label) for r in rows], [r.where for r in rows], path, stats)


def _read_parallel(prefix: str, cfg, stats) -> _Raw:
  """Line i of <prefix><source_suffix> and of <prefix><target_suffix>: one pair."""
  if not cfg.source_suffix or not cfg.target_suffix:
    raise ConfigError("data.format='parallel' needs data.source_suffix and data.target_suffix "
                      "(e.g. '.spa' and '.eng' for <path>.spa / <path>.eng)")
  sides = []
  for suffix in (cfg.source_suffix, cfg.target_suffix):
    path = prefix + suffix
    if not os.path.isfile(path):
      raise DataError(f"data.path: {path} does not exist (data.format='parallel' reads "
                      "<data.path><source_suffix> and <data.path><target_suffix>)")
    bad: dict[int, str] = {}
    lines = [(n, text.rstrip("\r\n")) for n, text in readers.decoded_lines(path, bad)]
    sides.append((path, lines, bad))
  (src_path, src, src_bad), (tgt_path, tgt, tgt_bad) = sides
  if len(src) != len(tgt):
    raise DataError(f"{src_path} has {len(src)} lines but {tgt_path} has {len(tgt)}: the "
                    "files of a parallel corpus must align line by line")
  items, where = [], []
  for (n, s), (_, t) in zip(src, tgt):
    at = f"{src_path}:{n}"
    reason = src_bad.get(n) or tgt_bad.get(n)
    if reason is None and not (s.strip() and t.strip()):
      reason = "empty line on one side"
    if reason is not None:
      readers.bad_row(at, reason.split(" (")[0], reason, on_bad_row=cfg.on_bad_row, stats=stats)
      continue
    items.append((cfg.prompt_template.format(source=s.strip()), t.strip()))
    where.append(at)
  return _Raw(items, where, f"{src_path} -> {tgt_path}", stats)


def _read_chats(path: str, cfg, stats) -> _Raw:
  items, where = [], []
  bad: dict[int, str] = {}
  for number, line in readers.decoded_lines(path, bad):
    at = f"{path}:{number}"
    if number in bad:
      readers.bad_row(at, "undecodable bytes", bad[number], on_bad_row=cfg.on_bad_row,
                      stats=stats)
      continue
    if not line.strip():
      continue
    try:
      obj = json.loads(line)
    except json.JSONDecodeError as e:
      readers.bad_row(at, "bad JSON", f"bad JSON ({e.msg} at column {e.colno})",
                      on_bad_row=cfg.on_bad_row, stats=stats)
      continue
    messages = obj.get(cfg.messages_column) if isinstance(obj, dict) else None
    try:
      items.append(lm.check_messages(messages, at))
      where.append(at)
    except DataError as e:
      readers.bad_row(at, "bad chat", str(e).split(": ", 1)[1], on_bad_row=cfg.on_bad_row,
                      stats=stats)
  return _Raw(items, where, path, stats)


def _hold_out(train: _Raw, fraction: float, name: str, fmt: str, seed: int) -> tuple[_Raw, _Raw]:
  """(rest of train, held-out split): the tail for text, a hashed choice otherwise."""
  n = len(train.items)
  k = splits_lib.held_out_count(n, fraction)
  if not 0 < k < n:
    raise DataError(f"{train.source}: cannot hold out data.{name}_fraction={fraction} of "
                    f"{n} rows as {name} (add a {name} file or change the fraction)")
  if fmt == "text":
    chosen = set(range(n - k, n))
  else:
    chosen = splits_lib.hashed_choice([json.dumps(item) for item in train.items], fraction, seed,
                                      salt=f"{name}\0")
  pick = lambda keep: ([x for i, x in enumerate(train.items) if (i in chosen) == keep],
                       [w for i, w in enumerate(train.where) if (i in chosen) == keep])
  held_items, held_where = pick(True)
  rest_items, rest_where = pick(False)
  if fmt == "text":  # the held-out lines, e.g. "input.txt:34201..36000"
    source = f"{held_where[0]}..{held_where[-1].rsplit(':', 1)[1]}"
  else:
    source = f"{train.source} (a hashed {fraction:g} of its rows)"
  return (_Raw(rest_items, rest_where, train.source, train.stats,
               rows_read=train.rows_read - len(held_items)),
          _Raw(held_items, held_where, source))


def chat_tokenizer(data_cfg, tokenizer, model_name: str):
  """The tokenizer a run renders its data with: with data.chat_template's template when
  set, else the model's own; ConfigError when the data needs a template there is none of."""
  path = getattr(data_cfg, "chat_template", "")
  if path:
    try:
      with open(os.path.expanduser(path), encoding="utf-8") as f:
        source = f.read()
    except OSError as e:
      raise ConfigError(f"config field data.chat_template: {os_error_text(e)}") from e
    except UnicodeDecodeError as e:
      raise ConfigError(f"config field data.chat_template: {path} is not UTF-8 text") from e
    try:
      tokenizer = tokenizer.with_chat_template(source)
    except FjftError as e:
      raise ConfigError(f"config field data.chat_template: {path}: {e}") from e
  fmt = data_cfg.format
  if tokenizer.chat_template is None and (
      fmt == "chat" or (fmt in ("prompt_response", "parallel") and data_cfg.use_chat_template)):
    other = "" if fmt == "chat" else (", or data.use_chat_template=False to train on "
                                      "prompt + response + EOS")
    raise ConfigError(f"model {model_name} has no chat template, which data.format={fmt!r} "
                      f"renders its rows with: give one with data.chat_template=<file.jinja>"
                      f"{other}")
  return tokenizer


def _encode(raw: _Raw, cfg, tokenizer) -> list[lm.LMExample]:
  if cfg.format == "text":
    return _text_rows(raw, cfg.max_length, tokenizer)
  if cfg.format == "chat":
    encode = lambda m, w: lm.from_chat(tokenizer, m, w, train_on_prompt=cfg.train_on_prompt)
  else:
    encode = lambda pr, w: lm.from_prompt_response(
        tokenizer, *pr, w, use_chat_template=cfg.use_chat_template,
        train_on_prompt=cfg.train_on_prompt)
  out = []
  for item, where in zip(raw.items, raw.where):
    try:
      out.append(encode(item, where))
    except DataError as e:   # e.g. a chat its template rejects: a bad row like any other
      readers.bad_row(where, "not rendered by the chat template", str(e).removeprefix(f"{where}: "),
                      on_bad_row=cfg.on_bad_row, stats=raw.stats)
  return out


def _text_rows(raw: _Raw, length: int, tokenizer) -> list[lm.LMExample]:
  """The split's text as one token stream cut into rows of `length` tokens."""
  import numpy as np
  text = "".join(raw.items)
  ids = tokenizer.encode(text, add_special_tokens=False)
  if tokenizer.eos_id is not None:
    ids.append(tokenizer.eos_id)
  out = []
  for start in range(0, len(ids), length):
    chunk = np.asarray(ids[start:start + length], np.int32)
    if len(chunk) > 1:
      out.append(lm.LMExample(chunk, np.ones(len(chunk), bool),
                              f"{raw.source}: tokens {start}..{start + len(chunk) - 1}"))
  return out
