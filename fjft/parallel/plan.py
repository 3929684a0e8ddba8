"""What one device holds of a run's training state under a data-parallel mesh (data=N) and a
fully sharded one (fsdp=N): params, gradients and AdamW state, in bytes, computed from
the shapes and the config's sharding rules (nothing is placed on a device, any number of
devices can be asked about). Activations are not counted: they grow with the batch per
device and shrink with model.remat.
"""

from __future__ import annotations

import math

import jax
from flax import nnx
from jax.sharding import PartitionSpec

from fjft import tasks
from fjft.errors import ConfigError
from fjft.parallel import mesh as mesh_lib
from fjft.training import optim


def model_params(config):
  """(params as the run builds them, with config.peft's adapters; the regex of the params
  a LoRA run trains, "" for all)."""
  model, only = tasks.get(config.get("task")).plan_model(config)
  return nnx.split(model)[1], only


def per_device_bytes(config, params, only: str, axis_sizes: dict) -> dict[str, int]:
  """{"params", "grads", "optimizer", "total"}: one device's bytes on a mesh of
  `axis_sizes` (e.g. {"data": 1, "fsdp": 8, "tensor": 1})."""
  rules = config.sharding_rules
  sizes = {a: int(axis_sizes.get(a, 1)) for a in mesh_lib.AXES}

  def leaf_bytes(spec, x):
    wanted = mesh_lib.logical_to_mesh_spec(spec, rules) if spec is not None else PartitionSpec()
    block = mesh_lib.shard_shape(x.shape, mesh_lib.fit_spec(wanted, x.shape, sizes), sizes)
    return math.prod(block) * x.dtype.itemsize

  nbytes = jax.tree.map(leaf_bytes, nnx.get_partition_spec(params), params,
                        is_leaf=lambda x: isinstance(x, PartitionSpec) or x is None)
  trainable = optim.trainable_mask(params, config.optim.get("freeze", ""), only)
  trained = optim.split_trainable(params, trainable)[0]
  trained_bytes = optim.split_trainable(nbytes, trainable)[0]
  optimizer = optim.make_optimizer(config.optim, config.train.steps, trained)
  state = jax.eval_shape(optimizer.init, trained)
  # a moment holds as many numbers per device as its param, in its own dtype (bfloat16
  # with optim.state_dtype=bfloat16)
  elements = jax.tree.map(lambda b, x: b // x.dtype.itemsize, trained_bytes, trained)
  counts = optim.like_params(state, trained, elements, lambda x: x.size)
  out = {"params": sum(jax.tree.leaves(nbytes)), "grads": sum(jax.tree.leaves(trained_bytes)),
         "optimizer": sum(n * x.dtype.itemsize
                          for n, x in zip(jax.tree.leaves(counts), jax.tree.leaves(state)))}
  out["total"] = sum(out.values())
  return out


def parse_devices(text: str) -> list[int]:
  """--devices: '1,8,64' -> [1, 8, 64]; each a count >= 1, at least one."""
  try:
    devices = [int(x) for x in text.split(",") if x.strip()]
  except ValueError:
    devices = []
  if not devices or min(devices) < 1:
    raise ConfigError(f"--devices: comma-separated device counts >= 1, e.g. 1,8,64 "
                      f"(got {text!r})")
  return devices


def table(config, devices: list[int]) -> str:
  params, only = model_params(config)
  rows = ["| devices | mesh | params | grads | AdamW state | total per device |",
          "|---|---|---|---|---|---|"]
  for n in devices:
    for name, axes in (("data", {"data": n}), ("fsdp", {"fsdp": n})):
      if n == 1 and name == "fsdp":
        continue  # one device: both meshes are the same
      b = per_device_bytes(config, params, only, axes)
      rows.append(f"| {n} | {name}={n} | " + " | ".join(
          mesh_lib.format_bytes(b[k]) for k in ("params", "grads", "optimizer", "total")) + " |")
  return "\n".join(rows)
