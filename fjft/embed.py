"""python -m fjft.embed --run=<retrieval run dir> --input=<jsonl|csv|tsv|parquet>
                      --output=<out.npy | out.jsonl> [--text_column=text] [--kind=doc|query]

Embeds every row's text with the run's best model. A .npy output is one float32 [rows,
dim] array in input order; a .jsonl output has one {"embedding": [...]} line per row (with
"id" when the input has the --id_column). --kind=query embeds at the run's query length.
"""

from __future__ import annotations

import json

import numpy as np
from absl import app, flags

from fjft import allocator, cli, tasks
from fjft.run import opened
from fjft.data import readers
from fjft.errors import DataError, FjftError, exit_on_user_error

if __name__ == "__main__":
  flags.DEFINE_string("run", None, "A retrieval run directory.", required=True)
  flags.DEFINE_string("input", None, "File of texts.", required=True)
  flags.DEFINE_string("output", None, "Output .npy or .jsonl.", required=True)
  flags.DEFINE_string("text_column", "text", "Text column of --input.")
  flags.DEFINE_string("id_column", "id", "Copied to .jsonl output lines when present.")
  flags.DEFINE_enum("kind", "doc", ["doc", "query"], "Embed as documents or as queries.")
  flags.DEFINE_integer("batch_size", 64, "Texts per forward pass.", lower_bound=1)


def read_texts(path: str, text_column: str, id_column: str | None
               ) -> tuple[list[str], list[str | None]]:
  texts, ids = [], []
  rows = readers.read_table(path, {text_column: "text_column"}, on_bad_row="error",
                            stats=readers.BadRowStats(readers.INPUT_FILE_HINT), optional=[id_column] if id_column else [])
  for where, obj in rows:
    if not isinstance(obj, dict) or not isinstance(obj.get(text_column), str):
      raise DataError(f"{where}: no text in column {text_column!r} (--text_column)")
    texts.append(obj[text_column])
    ids.append(None if not id_column or obj.get(id_column) is None else str(obj[id_column]))
  if not texts:
    raise DataError(f"{path}: no rows")
  return texts, ids


@exit_on_user_error
def main(argv):
  cli.begin(argv)
  f = flags.FLAGS
  if not f.output.endswith((".npy", ".jsonl")):
    raise FjftError(f"--output must end in .npy or .jsonl, got {f.output!r}")
  cli.check_output(f.output, input=f.input)
  run = opened.open_run(f.run, "embed")
  texts, ids = read_texts(f.input, f.text_column, f.id_column)
  vectors = tasks.get(run.task).embed(run, texts, f.batch_size, f.kind)
  if f.output.endswith(".npy"):
    np.save(f.output, vectors)
  else:
    with open(f.output, "w") as out:
      for i, v in zip(ids, vectors):
        line = {"id": i} if i is not None else {}
        line["embedding"] = [round(float(x), 7) for x in v]
        out.write(json.dumps(line) + "\n")
  print(f"wrote {len(texts)} embeddings of dimension {vectors.shape[1]} to {f.output} "
        f"(best checkpoint, step {run.best_step})")


if __name__ == "__main__":
  allocator.reexec()  # before anything allocates: see fjft/allocator.py
  app.run(main, flags_parser=cli.plain_flags_parser)
