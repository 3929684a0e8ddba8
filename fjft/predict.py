"""python -m fjft.predict --run=<run dir> --input=<jsonl|csv|tsv|parquet> --output=<out.jsonl>
                        [--label_column=<col> [--label_map=<theirs>=<ours>,...]]

With --label_column the input's gold labels are scored too (accuracy, macro-F1), which is
how a model is checked on data from another domain: --label_map renames the file's labels
to the run's (e.g. negative=0,positive=1 for an SST-2 run).
"""

from __future__ import annotations

import json

import numpy as np

from absl import app, flags

from fjft import allocator, cli
from fjft.run import opened as infer
from fjft.data.readers import BadRowStats, read_rows
from fjft.errors import DataError, FjftError, exit_on_user_error
from fjft.tasks.classify import model as classify

flags.DEFINE_string("run", None, "Run directory.", required=True)
flags.DEFINE_string("input", None, "File of texts (the run's text column).", required=True)
flags.DEFINE_string("output", None, "Output jsonl: one {label, probs} per input row.", required=True)
flags.DEFINE_string("text_column", None, "Text column of --input (default: the run's).")
flags.DEFINE_integer("batch_size", 64, "Examples per forward pass.")
flags.DEFINE_string("label_column", None, "Gold label column of --input: score the predictions.")
flags.DEFINE_string("label_map", None, "Rename gold labels to the run's: 'neg=0,pos=1'.")


def parse_label_map(text: str | None) -> dict[str, str]:
  out = {}
  for item in (text or "").split(","):
    if not item.strip():
      continue
    theirs, eq, ours = item.partition("=")
    if not eq:
      raise FjftError(f"--label_map: {item!r} is not <input label>=<run label>")
    out[theirs.strip()] = ours.strip()
  return out


def gold_indices(rows, labels: list[str], label_map: dict[str, str]) -> list[int]:
  index = {l: i for i, l in enumerate(labels)}
  out = []
  for r in rows:
    label = label_map.get(r.label, r.label)
    if label not in index:
      raise DataError(f"{r.where}: label {r.label!r} is not one of the run's labels {labels}"
                      + ("" if label_map else "; map it with --label_map=<input label>=<run label>"))
    out.append(index[label])
  return out


@exit_on_user_error
def main(argv):
  cli.begin(argv)
  f = flags.FLAGS
  run = infer.load_run(f.run)
  column = f.text_column or run.config["data"]["text_column"]
  rows = read_rows(f.input, text_column=column, label_column=f.label_column, on_bad_row="error",
                   stats=BadRowStats())
  labels = run.info["labels"]
  gold = gold_indices(rows, labels, parse_label_map(f.label_map)) if f.label_column else None
  probs = infer.predict_texts(run, [r.text for r in rows], f.batch_size)
  with open(f.output, "w") as out:
    for p in probs:
      out.write(json.dumps({"label": labels[int(p.argmax())],
                            "probs": {l: round(float(x), 6) for l, x in zip(labels, p)}}) + "\n")
  print(f"wrote {len(rows)} predictions to {f.output} (best checkpoint, step {run.best_step})")
  if gold is not None:
    m = classify.metrics(np.asarray(gold), probs.argmax(-1), len(labels))
    print(f"scored against {f.label_column}: accuracy {m['accuracy']:.4f}, "
          f"macro_f1 {m['macro_f1']:.4f} on {len(rows)} rows")


if __name__ == "__main__":
  allocator.reexec()  # before anything allocates: see fjft/allocator.py
  app.run(main)
