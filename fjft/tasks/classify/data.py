"""Text classification's data: train/dev/test examples with a label each, and their report.

load_classification_splits reads, cleans, dedups, splits and reports; the order of its
steps is part of the contract, and each step counts what it drops, so the data report
(fjft.data.report) accounts for every row read. Dev, when there is no dev split, is carved
from train by the shared hashed splitter (fjft.data.splits.hashed_choice), stratified by label.

The report's classification keys: num_labels, labels; per split files, rows_kept,
duplicates_kept, label_counts, length_words, moved_to_dev, carved_from_train.
report_lines() prints them (the Task's report_lines, used by fjft.data.report.format_report).
"""

from __future__ import annotations

import collections
import dataclasses
import os
import re
from typing import Any

from fjft.data import dedup
from fjft.data import readers
from fjft.data import report as report_lib
from fjft.data.clean import normalize_text
from fjft.data.splits import hashed_choice, split_files
from fjft.errors import ConfigError, DataError

_HF_SPLITS = {"train": ("train",), "dev": ("validation", "dev", "valid"), "test": ("test",)}
# owner/name or name, optionally :config, e.g. "stanfordnlp/sst2", "glue:sst2".
_HF_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?(:[\w.-]+)?")
_INTEGER = re.compile(r"-?\d+")

DUPLICATES = report_lib.DUPLICATES
CONFLICTING_LABELS = "conflicting labels"
OVERLAP = report_lib.OVERLAP
IMBALANCE_RATIO = 0.1  # warn when the smallest class is under 10% of the largest
MIN_DEV_EXAMPLES = 100
_MAX_LABELS_LISTED = 8


@dataclasses.dataclass
class Example:
  text: str  # cleaned (normalize_text)
  label: str
  where: str  # "path:line" of the row it came from


@dataclasses.dataclass
class Splits:
  train: list[Example]
  dev: list[Example]
  test: list[Example]  # empty when there is no test split
  labels: list[str]  # sorted label vocabulary of train (numerically if all are integers)
  report: dict  # JSON-serialisable; format_report() prints it


@dataclasses.dataclass(frozen=True)
class _Options:
  path: str
  text_column: str
  label_column: str
  on_bad_row: str
  dev_fraction: float
  split_seed: int
  lowercase: bool
  dedup: bool
  min_train_examples: int


@dataclasses.dataclass
class _Split:
  """One split while it is being processed, with everything the report needs."""

  files: list[str]
  stats: readers.BadRowStats
  rows_read: int
  examples: list[Example]
  removed: readers.BadRowStats = dataclasses.field(default_factory=readers.BadRowStats)
  duplicates_kept: int = 0  # repeats kept: dedup off, or test


def load_classification_splits(data_cfg: Any, *, text_column: str | None = None) -> Splits:
  """Reads `data_cfg.path` into cleaned train/dev/test examples plus a data report.

  Steps, in order: read every split (bad rows raise or are skipped, per data.on_bad_row)
  -> normalize_text -> empty texts and labels are bad rows -> within train and dev, exact
  duplicates are dropped (data.dedup) and, within train, a text seen before with another
  label is dropped ("conflicting labels") -> without a dev split, dev is carved from train
  (stratified, data.dev_fraction, data.split_seed) -> dev/test rows with a label unseen in
  train are bad rows -> train rows whose text is also in dev or test are dropped.
  Test keeps its duplicates, so its size stays comparable with published results.

  `text_column`, when given, overrides data_cfg.text_column.
  """
  opts = _options(data_cfg, text_column)
  notes: list[str] = []
  splits = {name: _clean(split, opts) for name, split in _read(opts, notes).items()}
  train = splits["train"]
  _drop_duplicates(train, opts.dedup, conflicts=True)
  if "dev" in splits:
    _drop_duplicates(splits["dev"], opts.dedup, conflicts=False)
    moved_to_dev = None
  else:
    splits["dev"], moved_to_dev = _carve_dev(train, opts)
  if "test" in splits:
    _drop_duplicates(splits["test"], dedup=False, conflicts=False)
  labels = sorted_labels({ex.label for ex in train.examples})
  if not train.examples:
    raise DataError(f"{', '.join(train.files)}: no usable training examples "
                    f"({train.rows_read} rows read, {train.stats.total} bad rows skipped: "
                    f"{_reasons(train.stats)})")
  if len(labels) < 2:
    raise DataError(f"{', '.join(train.files)}: train has a single label {labels[0]!r} in "
                    f"column {opts.label_column!r}: there is nothing to classify (is "
                    "data.label_column right?)")
  for name in ("dev", "test"):
    if name in splits:
      _drop_unseen_labels(splits[name], set(labels), opts.on_bad_row)
  _drop_overlap(train, splits)
  names = [name for name in ("train", "dev", "test") if name in splits]
  split_reports = {name: _split_report(splits[name], labels) for name in names}
  split_reports["train"]["moved_to_dev"] = moved_to_dev or 0
  split_reports["dev"]["carved_from_train"] = moved_to_dev is not None
  if moved_to_dev is not None:
    split_reports["dev"]["source"] = (f"carved from train (dev_fraction {opts.dev_fraction}, "
                                      f"split_seed {opts.split_seed})")
  lengths = {name: report_lib.length_stats((len(ex.text.split()) for ex in splits[name].examples),
                                           "words") for name in names}
  warnings = notes + classification_warnings(split_reports, opts.min_train_examples)
  report = report_lib.build_report(
      "classify", source=opts.path, settings=dataclasses.asdict(opts), splits=split_reports,
      lengths=lengths, warnings=warnings, num_labels=len(labels), labels=list(labels))
  return Splits(train=train.examples, dev=splits["dev"].examples,
                test=splits["test"].examples if "test" in splits else [], labels=labels,
                report=report)


def sorted_labels(labels) -> list[str]:
  """Sorted label strings: numerically when all are integers ("2" < "10"), else as text."""
  labels = list(labels)
  if labels and all(_INTEGER.fullmatch(label) for label in labels):
    return sorted(labels, key=int)
  return sorted(labels)


def _get(cfg: Any, name: str, default: Any) -> Any:
  try:
    value = getattr(cfg, name)
  except (AttributeError, KeyError):
    value = cfg.get(name, default) if isinstance(cfg, dict) else default
  return default if value is None else value


def _options(cfg: Any, text_column: str | None) -> _Options:
  path = _get(cfg, "path", "")
  if isinstance(path, os.PathLike):
    path = os.fspath(path)
  if not isinstance(path, str) or not path:
    raise ConfigError("data.path is not set: give a data file, a folder holding "
                      "train/dev/test files, or a Hugging Face dataset name")
  opts = _Options(
      path=path,
      text_column=text_column or _get(cfg, "text_column", "text"),
      label_column=_get(cfg, "label_column", "label"),
      on_bad_row=_get(cfg, "on_bad_row", "error"),
      dev_fraction=_get(cfg, "dev_fraction", 0.1),
      split_seed=_get(cfg, "split_seed", 0),
      lowercase=_get(cfg, "lowercase", False),
      dedup=_get(cfg, "dedup", True),
      min_train_examples=_get(cfg, "min_train_examples", 500))
  for field in ("text_column", "label_column"):
    if not isinstance(getattr(opts, field), str) or not getattr(opts, field):
      raise ConfigError(f"data.{field} must be a column name, got {getattr(opts, field)!r}")
  readers.check_on_bad_row(opts.on_bad_row)
  fraction = opts.dev_fraction
  if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction < 1:
    raise ConfigError(f"data.dev_fraction must be a number in [0, 1), got {fraction!r}")
  for field in ("split_seed", "min_train_examples"):
    value = getattr(opts, field)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
      raise ConfigError(f"data.{field} must be a non-negative integer, got {value!r}")
  for field in ("lowercase", "dedup"):
    if not isinstance(getattr(opts, field), bool):
      raise ConfigError(f"data.{field} must be True or False, got {getattr(opts, field)!r}")
  return opts


def _looks_like_hf_name(path: str) -> bool:
  ext = readers.file_ext(path.partition(":")[0])
  return bool(_HF_NAME.fullmatch(path)) and ext not in readers.SUPPORTED_EXTENSIONS


def _read(opts: _Options, notes: list[str]) -> dict[str, _Split]:
  """Reads every split's rows; {split: _Split} with raw (uncleaned) rows in .examples."""
  columns = dict(text_column=opts.text_column, label_column=opts.label_column,
                 on_bad_row=opts.on_bad_row)
  path = os.path.expanduser(opts.path)
  splits = {}
  if os.path.exists(path):
    files = split_files(path) if os.path.isdir(path) else {"train": path}
    for name, file in files.items():
      stats = readers.BadRowStats()
      rows = readers.read_rows(file, stats=stats, **columns)
      splits[name] = _Split(files=[file], stats=stats, rows_read=len(rows) + stats.total,
                            examples=rows)
    return splits
  if not _looks_like_hf_name(opts.path):
    raise DataError(f"data.path: {opts.path} does not exist")
  dataset = readers.load_hf_dataset(opts.path)
  for name, candidates in _HF_SPLITS.items():
    split_name = next((c for c in candidates if c in dataset), None)
    if split_name is None:
      continue
    split, source = dataset[split_name], f"{opts.path}[{split_name}]"
    feature = (getattr(split, "features", None) or {}).get(opts.label_column)
    stats = readers.BadRowStats()
    rows = readers.read_records(split, source, stats=stats,
                                label_names=getattr(feature, "names", None), **columns)
    if name != "train" and rows and all(row.label == "-1" for row in rows):
      notes.append(f"{source} has no labels (all -1, as in GLUE test sets): not used")
      continue
    splits[name] = _Split(files=[source], stats=stats, rows_read=len(rows) + stats.total,
                          examples=rows)
  if "train" not in splits:
    raise DataError(f"data.path: Hugging Face dataset {opts.path} has no 'train' split "
                    f"(splits: {', '.join(dataset)})")
  return splits


def _clean(split: _Split, opts: _Options) -> _Split:
  """Turns rows into Examples with cleaned text; empty texts/labels are bad rows."""
  bad = dict(on_bad_row=opts.on_bad_row, stats=split.stats)
  examples = []
  for row in split.examples:
    text = normalize_text(row.text, lowercase=opts.lowercase)
    label = row.label.strip()
    if not text:
      readers.bad_row(row.where, "empty text", "empty text (nothing left after cleaning)", **bad)
    elif not label:
      readers.bad_row(row.where, "empty label", f"empty label in column {opts.label_column!r}",
                      **bad)
    else:
      examples.append(Example(text=text, label=label, where=row.where))
  split.examples = examples
  return split


def _drop_duplicates(split: _Split, dedup: bool, conflicts: bool) -> None:
  """Drops repeats of (text, label) when `dedup`, and later labels of a text if `conflicts`.

  Conflicting labels are dropped even without dedup: one text cannot teach two labels.
  Repeats that are kept (dedup off, or test) are counted in split.duplicates_kept.
  """
  first: dict[str, Example] = {}
  seen: dict[tuple[str, str], str] = {}
  kept = []
  for ex in split.examples:
    earlier = first.setdefault(ex.text, ex)
    if conflicts and earlier.label != ex.label:
      split.removed.add(ex.where, CONFLICTING_LABELS, f"label {ex.label!r}, but {earlier.where} "
                        f"has the same text with label {earlier.label!r}")
      continue
    if (ex.text, ex.label) in seen:
      if dedup:
        split.removed.add(ex.where, DUPLICATES,
                          f"same text and label as {seen[ex.text, ex.label]}")
        continue
      split.duplicates_kept += 1
    seen.setdefault((ex.text, ex.label), ex.where)
    kept.append(ex)
  split.examples = kept


def _carve_dev(train: _Split, opts: _Options) -> tuple[_Split, int]:
  """Moves a stratified `dev_fraction` of each label's train examples to a new dev split
  (hashed_choice of their texts); each label keeps one example in train."""
  to_dev = hashed_choice([ex.text for ex in train.examples], opts.dev_fraction, opts.split_seed,
                         strata=[ex.label for ex in train.examples], keep_one=True)
  dev = [ex for i, ex in enumerate(train.examples) if i in to_dev]
  train.examples = [ex for i, ex in enumerate(train.examples) if i not in to_dev]
  return _Split(files=[], stats=readers.BadRowStats(), rows_read=len(dev), examples=dev), len(dev)


def _drop_unseen_labels(split: _Split, labels: set[str], on_bad_row: str) -> None:
  kept = []
  for ex in split.examples:
    if ex.label in labels:
      kept.append(ex)
    else:
      readers.bad_row(ex.where, "label unseen in train", f"label {ex.label!r} unseen in train",
                      on_bad_row=on_bad_row, stats=split.stats)
  split.examples = kept


def _drop_overlap(train: _Split, splits: dict[str, _Split]) -> None:
  """Drops train examples whose text is in dev or test, so evaluation is on unseen texts."""
  where = {ex.text: ex.where for name in ("test", "dev") if name in splits
           for ex in splits[name].examples}
  train.examples = dedup.drop_seen(train.examples, lambda ex: ex.text, lambda ex: ex.where, where,
                                   train.removed, reason=OVERLAP, what="text")


def _reasons(stats: readers.BadRowStats) -> str:
  return ", ".join(f"{reason} {n}" for reason, n in stats.counts.items()) or "none"


def _split_report(split: _Split, labels: list[str]) -> dict:
  counts = collections.Counter(ex.label for ex in split.examples)
  return report_lib.split_entry(
      ", ".join(split.files), split.rows_read, len(split.examples), split.stats, split.removed,
      files=list(split.files), rows_kept=len(split.examples),
      duplicates_kept=split.duplicates_kept,
      label_counts={label: counts.get(label, 0) for label in labels},
      length_words=report_lib.length_percentiles(len(ex.text.split()) for ex in split.examples))


def classification_warnings(splits: dict[str, dict], min_train_examples: int) -> list[str]:
  """Too little training data, a class missing or rare in train, a small or empty dev."""
  out = []
  train = splits["train"]["rows_kept"]
  if train < min_train_examples:
    out.append(f"train has only {train} examples: fine-tuning usually needs hundreds to "
               "thousands of good examples per task to beat a simple baseline; expect noisy "
               "dev metrics and compare against the TF-IDF baseline in results.json.")
  counts = splits["train"]["label_counts"]
  if counts:
    smallest = min(counts, key=counts.get)
    largest = max(counts, key=counts.get)
    empty = [label for label, n in counts.items() if n == 0]
    if empty:
      out.append(f"train has no examples of {', '.join(map(repr, empty))} (all dropped above): "
                 "the model cannot learn these labels.")
    elif counts[smallest] < IMBALANCE_RATIO * counts[largest]:
      out.append(f"train is imbalanced: the smallest class {smallest!r} has "
                 f"{counts[smallest]} examples, under {IMBALANCE_RATIO:.0%} of the largest "
                 f"{largest!r} ({counts[largest]}); accuracy hides a weak minority class, "
                 "so watch macro-F1.")
  dev = splits["dev"]["rows_kept"]
  if dev == 0:
    out.append("dev is empty: there is nothing to evaluate or select checkpoints on; add a "
               "dev file or set data.dev_fraction > 0.")
  elif dev < MIN_DEV_EXAMPLES:
    out.append(f"dev has only {report_lib.plural(dev, 'example')}: one example moves "
               f"accuracy by {100 / dev:.1f} points, so small differences between runs are "
               "noise.")
  return out


def _labels_line(counts: dict[str, int]) -> str:
  total = sum(counts.values()) or 1
  if len(counts) <= _MAX_LABELS_LISTED:
    return ", ".join(f"{label} {n} ({n / total:.0%})" for label, n in counts.items())
  smallest = min(counts, key=counts.get)
  largest = max(counts, key=counts.get)
  if counts[smallest] == counts[largest]:
    return f"{len(counts)} labels, {counts[smallest]} each"
  return (f"{len(counts)} labels, smallest {smallest} {counts[smallest]}, "
          f"largest {largest} {counts[largest]}")


def report_lines(report: dict):
  """Classification's part of format_report: (what follows "data: <path> " on the header,
  lines under the header, split -> lines under it)."""
  settings = report["settings"]
  head = (f"(text column {settings['text_column']!r}, label column "
          f"{settings['label_column']!r}): {report['num_labels']} labels")
  per_split = lambda s: ([f"duplicates kept: {s['duplicates_kept']}"] * bool(s["duplicates_kept"])
                         + [f"labels: {_labels_line(s['label_counts'])}"] * bool(s["examples"]))
  return head, [], per_split
