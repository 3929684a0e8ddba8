"""A sweep's summary: one row per run as a console table, CSV, Markdown and a PNG plot."""

from __future__ import annotations

import csv
import os

from fjft.training.loop import LOWER_IS_BETTER
from fjft.config import experiment as config_lib
from fjft.run import rundir


def collect(plan, outcomes: dict[int, dict]) -> list[dict]:
  """One row per planned run: swept values, status, steps, dev metrics, wall time.

  `outcomes[i]` holds {"status": "finished" | "skipped" | "failed" | "interrupted" |
  "held" (another process is training it), "reason": ...,
  "run_dir": ...} for run i.
  """
  rows = []
  for run in plan.runs:
    out = outcomes.get(run.index, {"status": "not run"})
    metric = run.config.train.metric
    row = {"run": run.label, "hash": run.hash12, "status": out["status"]}
    for field in plan.swept:
      row[field] = config_lib.get_field(run.config, field)
    row.update({"steps": None, "best_step": None, f"best_dev_{metric}": None,
                f"final_dev_{metric}": None, f"test_{metric}": None, "wall_min": None,
                "run_dir": out.get("run_dir", run.run_dir), "reason": out.get("reason", "")})
    results_file = rundir.results_path(row["run_dir"])
    if out["status"] in ("finished", "skipped") and os.path.isfile(results_file):
      res = rundir.read_json(results_file)
      history = res.get("history") or [{}]
      row.update({
          "steps": res["step"], "best_step": res["best_step"],
          f"best_dev_{metric}": res["dev"].get(metric),
          f"final_dev_{metric}": history[-1].get(metric),
          f"test_{metric}": res.get("test", {}).get(metric),
          "wall_min": round(res.get("wall_seconds", float("nan")) / 60, 2)})
    rows.append(row)
  return rows


def best(rows: list[dict], metric: str) -> dict | None:
  """The run with the best dev `metric` (the lowest for a loss or perplexity)."""
  scored = [r for r in rows if r.get(f"best_dev_{metric}") is not None]
  if not scored:
    return None
  pick = min if metric in LOWER_IS_BETTER else max
  return pick(scored, key=lambda r: r[f"best_dev_{metric}"])


def _cell(v) -> str:
  if v is None:
    return ""
  if isinstance(v, float):
    return f"{v:.4g}" if abs(v) < 1e-2 and v else f"{v:.4f}".rstrip("0").rstrip(".") or "0"
  return str(v)


def _columns(rows: list[dict]) -> list[str]:
  cols = [c for c in rows[0] if c not in ("run_dir", "reason")]
  # Columns that are empty in every row (no test split, nothing failed) add only noise.
  return [c for c in cols if any(r[c] not in (None, "") for r in rows)] + \
      (["reason"] if any(r["reason"] for r in rows) else [])


def table(rows: list[dict]) -> str:
  cols = _columns(rows)
  cells = [[_cell(r[c]) for c in cols] for r in rows]
  widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
  line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths)).rstrip()
  return "\n".join([line(cols), line(["-" * w for w in widths])] + [line(r) for r in cells])


def markdown(rows: list[dict]) -> str:
  cols = _columns(rows)
  out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
  out += ["| " + " | ".join(_cell(r[c]).replace("|", "\\|") for c in cols) + " |"
          for r in rows]
  return "\n".join(out) + "\n"


def write(sweep_dir: str, rows: list[dict], swept: list[str], metric: str) -> dict[str, str]:
  """Writes summary.csv, summary.md and summary.png; returns their paths."""
  os.makedirs(sweep_dir, exist_ok=True)
  paths = {k: os.path.join(sweep_dir, f"summary.{k}") for k in ("csv", "md", "png")}
  with open(paths["csv"], "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
  top = best(rows, metric)
  with open(paths["md"], "w") as f:
    f.write(markdown(rows))
    if top:
      f.write(f"\nBest: `{top['run']}` ({top['hash']}), best dev {metric} "
              f"{_cell(top[f'best_dev_{metric}'])}, in {top['run_dir']}\n")
  plot(paths["png"], rows, swept, metric)
  return paths


def plot(path: str, rows: list[dict], swept: list[str], metric: str) -> None:
  """Best dev metric against each swept field, one panel per field."""
  import matplotlib
  matplotlib.use("Agg")  # files only: no display on a cluster node
  import matplotlib.pyplot as plt

  fields = swept or ["run"]
  fig, axes = plt.subplots(1, len(fields), figsize=(4.2 * len(fields), 3.4), squeeze=False)
  key = f"best_dev_{metric}"
  for ax, field in zip(axes[0], fields):
    done = [r for r in rows if r[key] is not None]
    xs_raw = [r[field] for r in done]
    numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs_raw)
    names = sorted({str(x) for x in xs_raw})
    xs = xs_raw if numeric else [names.index(str(x)) for x in xs_raw]
    # Colour by another swept field, so an interaction shows as separated colours.
    other = next((f for f in fields if f != field), None)
    groups = sorted({str(r[other]) for r in done}) if other else [None]
    for g in groups:
      idx = [i for i, r in enumerate(done) if g is None or str(r[other]) == g]
      ax.scatter([xs[i] for i in idx], [done[i][key] for i in idx],
                 label=None if g is None else f"{other.rsplit('.', 1)[-1]}={g}")
    if other:
      ax.legend(fontsize=8)
    if numeric and xs and min(xs) > 0 and max(xs) / min(xs) >= 10:
      ax.set_xscale("log")
    if not numeric:
      ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_xlabel(field)
    ax.set_ylabel(f"best dev {metric}")
    ax.grid(alpha=0.3)
  failed = sum(1 for r in rows if r[key] is None)
  fig.suptitle(f"{len(rows) - failed} runs" + (f" ({failed} without results)" if failed else ""))
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)

