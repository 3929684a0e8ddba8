"""python -m fjft.reproduce --run=<run dir or hash> --workdir=<dir>

Re-runs a finished run from its saved config.json, from scratch, under
<workdir>/reproductions/, and reports whether its dev metrics and best parameters match
the original's: bit for bit when the package versions and devices are the same as the
original's env.json says, within TOLERANCE otherwise. Before training it lists every
difference between the original env.json and this machine (package versions, device kind,
data file fingerprints, git commit and dirty tree). Exits 0 on a match, 1 on a mismatch.
"""

from __future__ import annotations

import sys

from absl import app, flags

from fjft import allocator, cli
from fjft.errors import FjftError, exit_on_user_error
from fjft.run import rundir
from fjft.run.reproduce import reproduce


@exit_on_user_error
def main(argv):
  cli.begin(argv)
  f = flags.FLAGS
  if not f.run:
    raise FjftError("--run is required: a run directory or a config hash")
  return 0 if reproduce(f.run, f.workdir) else 1


if __name__ == "__main__":
  allocator.reexec()  # before anything allocates: see fjft/allocator.py
  flags.DEFINE_string("run", None, "Run directory, or its config hash (or a prefix of it).")
  flags.DEFINE_string("workdir", "runs", "Where to look up a hash; the re-run goes to "
                      f"<workdir>/{rundir.REPRODUCTIONS}/.")
  app.run(lambda argv: sys.exit(main(argv)), flags_parser=cli.plain_flags_parser)
