"""Runs in a subprocess with 8 simulated CPU devices (tests/test_sharded_load.py); the rest
of the suite keeps one device.

    python tests/models/sharded_load_worker.py <tiny bert dir> <tiny llama dir> <out.json>

Loads each model twice through fjft.models.registry.load: on one device, and onto an
fsdp=8 mesh. After every param is created (the loader's on_param hook) it sums, per
device, the bytes of every live jax array's shards on that device, and keeps the peak.
"""

from __future__ import annotations

import collections
import gc
import json
import math
import sys

import jax
import ml_collections
import numpy as np
from flax import nnx

from fjft.models import registry
from fjft.parallel import mesh as mesh_lib

# A run's sharding rules as fjft.config.defaults.add_mesh writes them, with the encoder's
# (types, labels) and the decoder's (kv_heads, layers) own axes.
RULES = ml_collections.ConfigDict(dict(
    batch="data,fsdp", vocab="tensor", embed="fsdp", heads="tensor", mlp="tensor",
    position="", types="", labels="", kv_heads="tensor", layers=""))


def bytes_on_each_device() -> collections.Counter:
  used = collections.Counter()
  for a in jax.live_arrays():
    block = math.prod(a.sharding.shard_shape(a.shape)) * a.dtype.itemsize
    for device in a.sharding.addressable_devices:
      used[device] += block
  return used


def load(path: str, mesh, **runtime):
  """(the loaded params, the peak bytes that loading added on any one device)."""
  gc.collect()   # the previous loads' models (nnx modules hold cycles) off the devices
  before = bytes_on_each_device()   # arrays this process held already do not count
  peak = [0]

  def sample(name, array):
    added = bytes_on_each_device() - before
    peak[0] = max(peak[0], max(added.values(), default=0))

  loaded = registry.load(path, mesh=mesh, rules=RULES if mesh is not None else None,
                         on_param=sample, **runtime)
  params = nnx.state(loaded.model, nnx.Param)
  return params, peak[0]


def measure(path: str, mesh, **runtime) -> dict:
  one, peak_one = load(path, None, **runtime)
  flat_one = {k: np.asarray(v.get_value()) for k, v in nnx.to_flat_state(one)}
  del one   # its arrays off the devices before the sharded load
  sharded, peak_sharded = load(path, mesh, **runtime)
  flat = dict(nnx.to_flat_state(sharded))
  arrays = [v.get_value() for v in flat.values()]
  return {
      "params": len(arrays),
      "total": sum(a.nbytes for a in arrays),
      "replicated": sum(a.nbytes for a in arrays if a.sharding.is_fully_replicated),
      "largest_split": max(len(a.sharding.device_set) if not a.sharding.is_fully_replicated
                           else 1 for a in arrays),
      "peak_one": peak_one,
      "peak_sharded": peak_sharded,
      "held_sharded": mesh_lib.bytes_per_device(arrays),
      "equal": flat.keys() == flat_one.keys() and all(
          np.array_equal(np.asarray(jax.device_get(flat[k].get_value())), flat_one[k])
          for k in flat),
  }


def main(bert_dir: str, llama_dir: str, out_path: str) -> None:
  assert jax.device_count() == 8, jax.devices()
  mesh = mesh_lib.make_mesh(ml_collections.ConfigDict(dict(data=1, fsdp=8, tensor=1)))
  out = {"bert": measure(bert_dir, mesh), "llama": measure(llama_dir, mesh),
         "llama_scan": measure(llama_dir, mesh, scan_layers=True)}
  with open(out_path, "w") as f:
    json.dump(out, f, indent=1)


if __name__ == "__main__":
  main(*sys.argv[1:])
