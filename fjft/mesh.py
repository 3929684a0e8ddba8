"""Device mesh and logical-axis sharding: one config runs on 1 CPU, 8 GPUs or a TPU slice."""

from __future__ import annotations

import math

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from fjft.errors import ConfigError

AXES = ("data", "fsdp", "tensor")


def make_mesh(mesh_cfg, devices=None) -> Mesh:
  """Builds the (data, fsdp, tensor) mesh; one axis may be -1 to take the rest."""
  devices = list(jax.devices() if devices is None else devices)
  sizes = [int(mesh_cfg[a]) for a in AXES]
  if sizes.count(-1) > 1:
    raise ConfigError(f"config field mesh: at most one axis may be -1 (got {dict(zip(AXES, sizes))})")
  known = math.prod(s for s in sizes if s != -1)
  if -1 in sizes:
    if len(devices) % known:
      raise ConfigError(f"config field mesh: {len(devices)} devices do not divide by {known}")
    sizes[sizes.index(-1)] = len(devices) // known
  if math.prod(sizes) != len(devices):
    raise ConfigError(
        f"config field mesh: {dict(zip(AXES, sizes))} needs {math.prod(sizes)} devices, "
        f"found {len(devices)}")
  return Mesh(np.asarray(devices).reshape(sizes), AXES)


def _rule(rules, name):
  if name is None:
    return None
  if name not in rules:
    raise ConfigError(f"config field sharding_rules has no rule for logical axis {name!r}")
  axes = tuple(a for a in str(rules[name]).split(",") if a)
  for a in axes:
    if a not in AXES:
      raise ConfigError(f"config field sharding_rules.{name}: unknown mesh axis {a!r} (axes: {AXES})")
  if not axes:
    return None
  return axes[0] if len(axes) == 1 else axes


def logical_to_mesh_spec(logical: PartitionSpec | tuple, rules) -> PartitionSpec:
  """Maps a PartitionSpec of logical names to one of mesh axes (a mesh axis is used once)."""
  out, used = [], set()
  for name in tuple(logical):
    axes = _rule(rules, name)
    flat = (axes,) if isinstance(axes, str) else (axes or ())
    if any(a in used for a in flat):
      axes = None  # a mesh axis may shard only one dimension of an array
    else:
      used.update(flat)
    out.append(axes)
  return PartitionSpec(*out)


def shardings_for(logical_specs, mesh: Mesh, rules):
  """Maps a tree of logical PartitionSpecs to a tree of NamedShardings."""
  return jax.tree.map(
      lambda s: NamedSharding(mesh, logical_to_mesh_spec(s, rules)),
      logical_specs,
      is_leaf=lambda x: isinstance(x, PartitionSpec))


def batch_sharding(mesh: Mesh, rules) -> NamedSharding:
  """Batch arrays: leading axis over the `batch` rule, the rest replicated."""
  return NamedSharding(mesh, logical_to_mesh_spec(PartitionSpec("batch"), rules))


def global_batch(batch: dict, mesh: Mesh, rules) -> dict:
  """Turns this process's host arrays into global jax.Arrays sharded over the batch axes."""
  sharding = batch_sharding(mesh, rules)
  if jax.process_count() == 1:
    # One transfer call for the whole batch: this runs every step, and on a GPU whose step
    # takes ~3 ms the host's per-array overhead shows (0.23 vs 0.39 ms per batch measured).
    return jax.device_put(batch, sharding)
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}


def describe(mesh: Mesh) -> str:
  return " x ".join(f"{n}={s}" for n, s in mesh.shape.items()) + f" ({mesh.devices.size} {jax.devices()[0].platform})"
