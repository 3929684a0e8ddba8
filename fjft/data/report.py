"""The data report: what was read, what was dropped and why, balance, lengths, warnings.

build_report() assembles the JSON-serialisable dict (written to the run dir);
format_report() prints it as a few readable lines per split.
"""

from __future__ import annotations

import math
from typing import Iterable

IMBALANCE_RATIO = 0.1  # warn when the smallest class is under 10% of the largest
MIN_DEV_EXAMPLES = 100
_PERCENTILES = (50, 90, 99)
_MAX_LABELS_LISTED = 8
# Reasons for dropping rows that are not bad rows (those are named by the readers).
DUPLICATES = "duplicates"
CONFLICTING_LABELS = "conflicting labels"
OVERLAP = "overlap with dev/test"


def length_percentiles(lengths: Iterable[int]) -> dict:
  """{"p50", "p90", "p99", "max"} by nearest rank (always an observed length); None if empty."""
  values = sorted(lengths)
  if not values:
    return {f"p{p}": None for p in _PERCENTILES} | {"max": None}
  out = {f"p{p}": values[max(math.ceil(p / 100 * len(values)), 1) - 1] for p in _PERCENTILES}
  out["max"] = values[-1]
  return out


def build_report(splits: dict[str, dict], *, labels: list[str], settings: dict,
                 notes: list[str] = ()) -> dict:
  """The report dict: {"source", "settings", "num_labels", "labels", "splits", "warnings"}.

  `splits` maps split name -> the per-split dict made by fjft.data.splits; `notes` are
  extra warnings found while reading.
  """
  settings = dict(settings)
  source = settings.pop("path")
  return {
      "source": source,
      "settings": settings,
      "num_labels": len(labels),
      "labels": list(labels),
      "splits": splits,
      "warnings": list(notes) + _warnings(splits, settings),
  }


def _warnings(splits: dict[str, dict], settings: dict) -> list[str]:
  out = []
  for name, split in splits.items():
    bad = {reason: n for reason, n in split["dropped"].items()
           if reason not in (DUPLICATES, CONFLICTING_LABELS, OVERLAP)}
    if bad:
      out.append(f"{name}: skipped {_plural(sum(bad.values()), 'bad row')} "
                 f"({', '.join(f'{r}: {n}' for r, n in bad.items())}); examples in the report")
  train = splits["train"]["rows_kept"]
  if train < settings["min_train_examples"]:
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
    out.append(f"dev has only {_plural(dev, 'example')}: one example moves accuracy by "
               f"{100 / dev:.1f} points, so small differences between runs are noise.")
  return out


def _plural(n: int, noun: str) -> str:
  return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _split_source(split: dict, settings: dict) -> str:
  if split.get("carved_from_train"):
    return (f"carved from train (dev_fraction {settings['dev_fraction']}, "
            f"split_seed {settings['split_seed']})")
  return ", ".join(split["files"])


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


def format_report(report: dict) -> str:
  """A compact multi-line summary of build_report()'s dict, a few lines per split."""
  settings = report["settings"]
  lines = [f"data: {report['source']} (text column {settings['text_column']!r}, label column "
           f"{settings['label_column']!r}): {report['num_labels']} labels"]
  for name, split in report["splits"].items():
    kept = f"{split['rows_read']} read -> {split['rows_kept']} kept"
    if split.get("moved_to_dev"):
      kept += f" ({split['moved_to_dev']} moved to dev)"
    lines.append(f"  {name:5s} {kept}  [{_split_source(split, settings)}]")
    if split["dropped"]:
      lines.append("        dropped: " + ", ".join(f"{r} {n}" for r, n in split["dropped"].items()))
    for reason, examples in split["examples"].items():
      lines.append(f"          e.g. {examples[0]}")
    if split["duplicates_kept"]:
      lines.append(f"        duplicates kept: {split['duplicates_kept']}")
    if split["rows_kept"]:
      lines.append(f"        labels: {_labels_line(split['label_counts'])}")
      words = split["length_words"]
      lines.append(f"        words: p50 {words['p50']}, p90 {words['p90']}, p99 {words['p99']}, "
                   f"max {words['max']}")
  if report["warnings"]:
    lines.append("warnings:")
    lines.extend(f"  - {w}" for w in report["warnings"])
  return "\n".join(lines)
