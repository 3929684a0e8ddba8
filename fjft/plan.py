"""python -m fjft.plan --config=experiments/<file>.py[:arg] [--devices=1,8,64]

What one device holds of a run's training state under a data-parallel mesh (data=N) and a
fully sharded one (fsdp=N): params, gradients and AdamW state, in bytes, computed from
the shapes and the config's sharding rules (nothing is placed on a device, any number of
devices can be asked about). Activations are not counted: they grow with the batch per
device and shrink with model.remat.
"""

from __future__ import annotations

from absl import app, flags

from fjft import cli
from fjft.errors import exit_on_user_error
from fjft.parallel.plan import parse_devices, table

cli.define_config_flag()
flags.DEFINE_string("devices", "1,8,64", "Device counts to plan for, comma-separated.")


@exit_on_user_error
def main(argv):
  cli.begin(argv)
  config = cli.load_config_from_flags()
  devices = parse_devices(flags.FLAGS.devices)
  print(f"{config.name} ({config.model.name}): bytes per device, activations not counted")
  print(table(config, devices))


if __name__ == "__main__":
  app.run(main, flags_parser=cli.flags_parser)
