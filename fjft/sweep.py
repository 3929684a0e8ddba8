"""python -m fjft.sweep --config=experiments/<file>.py[:arg] --workdir=<dir> [--parallel=N]
                      [--dry_run] [--emit=commands|slurm] [--config.<field>=<value> ...]

Runs every run of the experiment's sweep() as an ordinary run, each in its own process,
N at a time, under <workdir>/<name>-sweep/<swept values>/<name>-<hash12>/. Runs whose hash
already finished there are skipped; a failed run does not stop the others. The summary
(table, CSV, Markdown, PNG) lands in the sweep folder, which is also the TensorBoard logdir
that shows every run side by side. --config.<field> overrides apply to every run.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

from fjft import allocator, cli
from fjft.sweeps import grid as sweeps
from fjft.sweeps.execute import dry_run_text, execute, summarize
from fjft.errors import ConfigError, exit_on_user_error

if __name__ == "__main__":
  allocator.reexec()  # before anything allocates: see fjft/allocator.py
  cli.define_config_flag()
  flags.DEFINE_integer("parallel", 1, "Runs at a time, each in its own process.")
  flags.DEFINE_bool("dry_run", False, "List the runs and their status; run nothing.")
  flags.DEFINE_enum("emit", None, ["commands", "slurm"],
                    "Print the pending runs' commands, or a SLURM array script, instead of running.")


@exit_on_user_error
def main(argv):
  cli.begin(argv)
  f = flags.FLAGS
  spec = cli.config_spec()
  if f.parallel < 1:
    raise ConfigError(f"--parallel must be >= 1 (got {f.parallel})")
  plan = sweeps.plan(spec, f.workdir, cli.OVERRIDES)
  if f.emit == "slurm":
    # SLURM opens the --output files before the script runs: the folder must exist.
    os.makedirs(os.path.join(plan.sweep_dir, "logs"), exist_ok=True)
    sys.stdout.write(sweeps.slurm_script(plan, f.parallel))
    return 0
  if f.emit == "commands":
    for run in plan.runs:
      cmd = sweeps.shell_command(sweeps.train_command(plan.spec, run, "python"))
      print(f"# finished: {run.finished_dir}\n# {cmd}" if run.finished_dir else cmd)
    return 0
  print(dry_run_text(plan), flush=True)
  if f.dry_run:
    return 0
  outcomes = execute(plan, f.parallel, say=lambda s: print(s, flush=True))
  return summarize(plan, outcomes)


if __name__ == "__main__":
  app.run(lambda argv: sys.exit(main(argv)), flags_parser=cli.flags_parser)
