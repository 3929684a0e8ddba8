"""python -m fjft.predict --run=<run dir> --input=<jsonl|csv|tsv|parquet> --output=<out.jsonl>
                        [--label_column=<col> [--label_map=<theirs>=<ours>,...]]

With --label_column the input's gold labels are scored too (accuracy, macro-F1), which is
how a model is checked on data from another domain: --label_map renames the file's labels
to the run's (e.g. negative=0,positive=1 for an SST-2 run).
"""

from __future__ import annotations

from absl import app, flags

from fjft import allocator, cli, tasks
from fjft.errors import exit_on_user_error
from fjft.run import opened

flags.DEFINE_string("run", None, "Run directory.", required=True)
flags.DEFINE_string("input", None, "File of texts (the run's text column).", required=True)
flags.DEFINE_string("output", None, "Output jsonl: one {label, probs} per input row.", required=True)
flags.DEFINE_string("text_column", None, "Text column of --input (default: the run's).")
flags.DEFINE_integer("batch_size", 64, "Examples per forward pass.", lower_bound=1)
flags.DEFINE_string("label_column", None, "Gold label column of --input: score the predictions.")
flags.DEFINE_string("label_map", None, "Rename gold labels to the run's: 'neg=0,pos=1'.")


@exit_on_user_error
def main(argv):
  cli.begin(argv)
  f = flags.FLAGS
  cli.check_output(f.output, input=f.input)
  run = opened.open_run(f.run, "predict")
  # (a decoder run opens as an LM, which does not name its task: model.json does)
  for line in tasks.get(opened.read_info(f.run)["task"]).predict(
      run, f.input, f.output, text_column=f.text_column, batch_size=f.batch_size,
      label_column=f.label_column, label_map=f.label_map):
    print(line)


if __name__ == "__main__":
  allocator.reexec()  # before anything allocates: see fjft/allocator.py
  app.run(main, flags_parser=cli.plain_flags_parser)
