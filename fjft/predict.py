"""python -m fjft.predict --run=<run dir> --input=<jsonl|csv|tsv|parquet> --output=<out.jsonl>"""

from __future__ import annotations

import json

from absl import app, flags

from fjft import infer
from fjft.data.readers import BadRowStats, read_rows
from fjft import cli
from fjft.errors import exit_on_user_error

flags.DEFINE_string("run", None, "Run directory.", required=True)
flags.DEFINE_string("input", None, "File of texts (the run's text column).", required=True)
flags.DEFINE_string("output", None, "Output jsonl: one {label, probs} per input row.", required=True)
flags.DEFINE_string("text_column", None, "Text column of --input (default: the run's).")
flags.DEFINE_integer("batch_size", 64, "Examples per forward pass.")


@exit_on_user_error
def main(argv):
  cli.begin(argv)
  f = flags.FLAGS
  run = infer.load_run(f.run)
  column = f.text_column or run.config["data"]["text_column"]
  rows = read_rows(f.input, text_column=column, label_column=None, on_bad_row="error",
                   stats=BadRowStats())
  probs = infer.predict_texts(run, [r.text for r in rows], f.batch_size)
  labels = run.info["labels"]
  with open(f.output, "w") as out:
    for p in probs:
      out.write(json.dumps({"label": labels[int(p.argmax())],
                            "probs": {l: round(float(x), 6) for l, x in zip(labels, p)}}) + "\n")
  print(f"wrote {len(rows)} predictions to {f.output} (best checkpoint, step {run.best_step})")


if __name__ == "__main__":
  app.run(main)
