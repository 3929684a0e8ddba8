"""python -m fjft.train --config=experiments/<file>.py[:arg] --workdir=<dir> [--config.<field>=<v>]"""

from __future__ import annotations

from absl import app, flags

from fjft import allocator, cli
from fjft.parallel import distributed
from fjft.run import runner as run
from fjft.errors import exit_on_user_error

cli.define_config_flag()
flags.DEFINE_bool("rerun", False, "Train again even if this config's run already finished.")
flags.DEFINE_bool("distributed", False,
                  "Join the other processes of a multi-host job first (fjft/distributed.py; "
                  "the launch/ scripts pass it).")


@exit_on_user_error
def main(argv):
  cli.begin(argv)
  config = cli.load_config_from_flags()
  if flags.FLAGS.distributed:
    distributed.initialize()
  say = print if distributed.is_main() else (lambda *_: None)
  run.run(config, flags.FLAGS.workdir, rerun=flags.FLAGS.rerun, say=say)


if __name__ == "__main__":
  allocator.reexec()  # before anything allocates: see fjft/allocator.py
  app.run(main, flags_parser=cli.flags_parser)
