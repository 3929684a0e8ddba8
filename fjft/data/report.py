"""The data report of every task: one schema, built by build_report(), printed by format_report().

Every task's report (written to the run dir as data_report.json) has these top-level keys:
  task                the task's name (fjft.tasks.TASKS)
  source              data.path
  settings            the data fields that shaped the splits
  splits              {name: split}; every split has
                        source              where its examples came from
                        rows_read           rows (lines, queries) it started with
                        examples            examples kept
                        bad_rows, skipped   bad rows skipped (data.on_bad_row="skip"):
                                            their number, and {"counts", "examples"} by reason
                        duplicates_removed  repeats of an earlier example of the split
                        overlap_removed     examples also in a later split (dev, test)
                        dropped             {reason: n} of everything removed, bad rows first
                        drop_examples       {reason: [the first few, "path:line: why"]}
  lengths             {split name: {"unit", "p50", "p90", "p99", "max"}} of the kept examples
  skipped             every bad row skipped, in a split or before splitting: {"counts", "examples"}
  bad_rows, duplicates_removed, overlap_removed   totals over the splits (bad_rows: and before)
  warnings            what to look at before trusting a run's numbers
Each task adds its own keys, at the top and in each split: its data module, which calls
build_report(), lists them, and its Task's report_lines() prints them.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable

from fjft.data.readers import MAX_EXAMPLES_PER_REASON, BadRowStats

_PERCENTILES = (50, 90, 99)
# Reasons for dropping rows that are not bad rows (those are named by the readers).
DUPLICATES = "duplicates"
OVERLAP = "overlap with dev/test"      # a train example that is also in dev or test
OVERLAP_TEST = "overlap with test"     # a dev example that is also in test
_OVERLAP_REASONS = (OVERLAP, OVERLAP_TEST)


def length_percentiles(lengths: Iterable[int]) -> dict:
  """{"p50", "p90", "p99", "max"} by nearest rank (always an observed length); None if empty."""
  values = sorted(lengths)
  if not values:
    return {f"p{p}": None for p in _PERCENTILES} | {"max": None}
  out = {f"p{p}": values[max(math.ceil(p / 100 * len(values)), 1) - 1] for p in _PERCENTILES}
  out["max"] = values[-1]
  return out


def length_stats(lengths: Iterable[int], unit: str) -> dict:
  """An entry of the report's "lengths": the unit ("words", "tokens") and the percentiles."""
  return {"unit": unit, **length_percentiles(lengths)}


def settings_of(data_cfg: Any) -> dict:
  """The data config as a plain dict (a ConfigDict, dataclass, dict or attribute object)."""
  if hasattr(data_cfg, "to_dict"):
    return data_cfg.to_dict()
  if dataclasses.is_dataclass(data_cfg):
    return dataclasses.asdict(data_cfg)
  return dict(data_cfg) if isinstance(data_cfg, dict) else dict(vars(data_cfg))


def split_entry(source: str, rows_read: int, examples: int, bad: BadRowStats,
                removed: BadRowStats | None = None, **extras) -> dict:
  """One split of the report: the common keys, then the task's `extras`.

  `bad` counts the split's bad rows, `removed` what else was dropped (duplicates, overlap,
  conflicting labels: reasons as in this module).
  """
  removed = removed or BadRowStats()
  return {
      "source": source,
      "rows_read": rows_read,
      "examples": examples,
      "bad_rows": bad.total,
      "skipped": bad.to_dict(),
      "duplicates_removed": removed.counts.get(DUPLICATES, 0),
      "overlap_removed": sum(removed.counts.get(r, 0) for r in _OVERLAP_REASONS),
      "dropped": {**bad.counts, **removed.counts},
      "drop_examples": {k: list(v) for k, v in {**bad.examples, **removed.examples}.items()},
      **extras,
  }


def build_report(task: str, *, source: str, settings: dict, splits: dict[str, dict],
                 lengths: dict[str, dict], warnings: Iterable[str] = (),
                 unsplit: BadRowStats | None = None, **extras) -> dict:
  """The report dict (see the module docstring); `unsplit` counts the bad rows skipped
  before there were splits (a corpus's documents, judgements), `warnings` the task's own."""
  skipped = BadRowStats()
  for stats in [(unsplit or BadRowStats()).to_dict()] + [s["skipped"] for s in splits.values()]:
    for reason, n in stats["counts"].items():
      skipped.counts[reason] = skipped.counts.get(reason, 0) + n
      kept = skipped.examples.setdefault(reason, [])
      kept.extend(stats["examples"].get(reason, [])[:MAX_EXAMPLES_PER_REASON - len(kept)])
  settings = {k: v for k, v in settings.items() if k != "path"}
  return {
      "task": task,
      "source": source,
      "settings": settings,
      "splits": splits,
      "lengths": lengths,
      "skipped": skipped.to_dict(),
      "bad_rows": skipped.total,
      "duplicates_removed": sum(s["duplicates_removed"] for s in splits.values()),
      "overlap_removed": sum(s["overlap_removed"] for s in splits.values()),
      "warnings": _bad_row_warnings(splits, unsplit) + list(warnings),
      **extras,
  }


def _bad_row_warnings(splits: dict[str, dict], unsplit: BadRowStats | None) -> list[str]:
  out = []
  named = [(f"{name}: skipped", split["skipped"]["counts"]) for name, split in splits.items()]
  for what, counts in named + [("skipped", unsplit.counts if unsplit else {})]:
    if counts:
      out.append(f"{what} {plural(sum(counts.values()), 'bad row')} "
                 f"({', '.join(f'{r}: {n}' for r, n in counts.items())}); examples in the report")
  return out


def plural(n: int, noun: str) -> str:
  """"1 row", "2 rows": `n` and the noun, plural unless n is 1."""
  return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def format_report(report: dict) -> str:
  """A compact multi-line summary of any task's report, a few lines per split; the task's
  own lines come from its Task's report_lines."""
  from fjft import tasks  # pylint: disable=g-import-not-at-top  # the tasks import fjft.data
  head, top, per_split = tasks.get(report["task"]).report_lines(report)
  lines = [f"data: {report['source']} {head}"] + top
  unsplit = dict(report["skipped"]["counts"])
  for name, split in report["splits"].items():
    for reason, n in split["skipped"]["counts"].items():
      unsplit[reason] -= n
    kept = f"{split['rows_read']} read -> {split['examples']} kept"
    if split.get("moved_to_dev"):
      kept += f" ({split['moved_to_dev']} moved to dev)"
    lines.append(f"  {name:5s} {kept}  [{split['source']}]")
    if split["dropped"]:
      lines.append("        dropped: " + ", ".join(f"{r} {n}" for r, n in split["dropped"].items()))
    lines.extend(f"          e.g. {examples[0]}" for examples in split["drop_examples"].values())
    lines.extend(f"        {line}" for line in per_split(split))
    lengths = report["lengths"].get(name)
    if split["examples"] and lengths:
      lines.append(f"        {lengths['unit']}: p50 {lengths['p50']}, p90 {lengths['p90']}, "
                   f"p99 {lengths['p99']}, max {lengths['max']}")
  unsplit = {reason: n for reason, n in unsplit.items() if n}
  if unsplit:
    lines.append("  skipped before splitting: " + ", ".join(f"{r} {n}" for r, n in unsplit.items()))
    lines.extend(f"          e.g. {report['skipped']['examples'][r][0]}" for r in unsplit)
  if report["warnings"]:
    lines.append("warnings:")
    lines.extend(f"  - {w}" for w in report["warnings"])
  return "\n".join(lines)
