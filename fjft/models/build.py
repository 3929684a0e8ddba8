"""Builds a family's Model from host values, each param created where it lives.

The model is built abstractly (nnx.eval_shape: shapes and logical axes, no
arrays), then each param is made from its host value: on the default device, or,
given a mesh and sharding rules, with jax.make_array_from_callback, which sends
every device only its own block. So loading a checkpoint onto a mesh never puts
a whole copy of a sharded param on any one device, and no initialiser runs
(eager nnx init compiles one XLA program per shape, seconds in a fresh process).

`weight_functions` gives every family module its from_hf, from_state_dict,
init_random and to_hf_state_dict, written once here over the Family protocol.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fjft.errors import ConfigError
from fjft.weights import hf_tensors
from fjft.weights.hf_config import read_hf_config

HostValues = Mapping[tuple[str, ...], Callable[[], np.ndarray]]
# Called after each param is created: (dotted path, the jax.Array).
OnParam = Callable[[str, jax.Array], None]


def make_config(family, hf_config: Mapping[str, Any], source: str,
                runtime_options: Mapping[str, Any]) -> Any:
  """family.Config.from_hf(hf_config, **runtime_options); a ConfigError (or an
  unknown option) is raised as a ConfigError naming `source`."""
  try:
    return family.Config.from_hf(hf_config, **runtime_options)
  except ConfigError as e:
    raise ConfigError(f"{source}: {e}") from e
  except TypeError as e:  # an option the Config has no field for
    raise ConfigError(f"{source}: {e} (runtime options given: {sorted(runtime_options)})"
                      ) from e


def _draw(family, cfg, path: tuple[str, ...], shape: tuple[int, ...],
          rng: np.random.Generator) -> np.ndarray:
  # HF's _init_weights, which the Models' initialisers follow: kernels and
  # embeddings ~ N(0, std), norm scales 1, biases 0.
  if path[-1] in ("kernel", "embedding"):
    return rng.normal(0.0, family.init_std(cfg, path), shape).astype(np.float32)
  return np.full(shape, 1.0 if path[-1] == "scale" else 0.0, np.float32)


def _shardings(state, mesh, rules) -> dict[tuple[str, ...], Any]:
  from fjft.parallel import mesh as mesh_lib  # only with a mesh: it pulls in optax
  tree, uneven = mesh_lib.param_shardings(state, mesh, rules)
  if uneven:
    logging.getLogger(__name__).info(
        "%d params are not split over every mesh axis their rule names (the axis size does"
        " not divide the dimension), e.g. %s", len(uneven), uneven[0])
  return {tuple(str(x) for x in p): v.get_value() if isinstance(v, nnx.Variable) else v
          for p, v in nnx.to_flat_state(tree)}


def place(host: np.ndarray, sharding) -> jax.Array:
  """A float32 jax.Array of `host`: on the default device (sharding None), or each
  device given only its block of `host`, cut on the host."""
  if sharding is None:
    # A copy: `host` may view a memory-mapped file, which a CPU array could alias.
    return jnp.asarray(np.array(host, np.float32))
  return jax.make_array_from_callback(
      host.shape, sharding, lambda index: np.array(host[index], np.float32))


def build_model(family, cfg, values: HostValues, *, seed: int = 0, mesh=None, rules=None,
                on_param: OnParam | None = None, complete: bool = True) -> nnx.Module:
  """family.Model(cfg) holding `values`; params absent from them are drawn at
  random (numpy, seeded), as HF initialises them.

  Args:
    values: param path -> host value (fjft.weights.hf_tensors.host_values).
    mesh, rules: place each param by its logical axes (config.sharding_rules,
      fjft.parallel.mesh.param_shardings); None: on the default device.
    on_param: called after each param is created.
    complete: every param must be in `values` unless the family's table marks it
      optional (a checkpoint load); False draws freely (init_random).
  """
  abstract = nnx.eval_shape(lambda: family.Model(cfg, rngs=nnx.Rngs(0)))
  graphdef, state = nnx.split(abstract)
  shardings = {} if mesh is None else _shardings(state, mesh, rules)
  optional = hf_tensors.optional_params(family.hf_tensors(cfg), cfg.num_layers,
                                       bool(getattr(cfg, "scan_layers", False)))
  rng = np.random.default_rng(seed)
  for p, var in nnx.to_flat_state(state):
    path = tuple(str(x) for x in p)
    shape = tuple(var.get_value().shape)
    if path in values:
      host = values[path]()
    elif complete and path not in optional:
      raise AssertionError(f"{family.__name__}: param {'.'.join(path)} has no HF mapping")
    else:
      host = _draw(family, cfg, path, shape, rng)
    if tuple(host.shape) != shape:  # the table and the Model disagree: a family's bug
      raise AssertionError(f"{family.__name__}: param {'.'.join(path)} is {shape}, its"
                           f" HF mapping gives {tuple(host.shape)}")
    value = place(host, shardings.get(path))
    var.set_value(value)
    if on_param is not None:
      on_param(".".join(path), value)
  return nnx.merge(graphdef, state)


# --------------------------------------------- every family's weight functions ---


def from_tensors(family, cfg, tensors: hf_tensors.Tensors, **placement) -> nnx.Module:
  """The model of `cfg` holding HF-named `tensors` (checked, then placed)."""
  return build_model(family, cfg, hf_tensors.host_values(family, cfg, tensors), **placement)


def from_hf(family, path: str | Path, **runtime_options: Any) -> tuple[Any, nnx.Module]:
  """(cfg, model) of an HF folder: config.json + model.safetensors (or an index
  and its shards). Runtime options (attention_impl, scan_layers, ...) go to the
  Config. Raises CheckpointError naming the file and tensor for a missing,
  unexpected or mis-shaped tensor."""
  # The config first: an unsupported model fails before any tensor is read.
  cfg = make_config(family, read_hf_config(path), str(Path(path) / "config.json"),
                    runtime_options)
  return cfg, from_tensors(family, cfg, hf_tensors.read_folder(path))


def from_state_dict(family, hf_config: Mapping[str, Any], tensors: Mapping[str, np.ndarray],
                    *, source: str = "state dict", **runtime_options: Any
                    ) -> tuple[Any, nnx.Module]:
  """(cfg, model) from an HF config dict and HF-named arrays in torch layout (any
  float dtype; stored as float32). `source` names their origin in errors."""
  cfg = make_config(family, hf_config, source, runtime_options)
  return cfg, from_tensors(family, cfg, hf_tensors.Tensors(tensors, {}, source))


def init_random(family, cfg, seed: int = 0) -> nnx.Module:
  """A randomly initialised model, HF-style, fast to build (numpy RNG): the same
  distributions as Model(cfg, rngs=nnx.Rngs(seed)), different draws."""
  return build_model(family, cfg, {}, seed=seed, complete=False)


def to_hf_state_dict(family, cfg, model_state) -> dict[str, np.ndarray]:
  """The params as an HF state dict (float32, HF names and layouts).
  model_state: the Model, its nnx.State, or nnx.to_pure_dict of it."""
  return hf_tensors.export(family, cfg, model_state)


def weight_functions(module_name: str):
  """(from_hf, from_state_dict, init_random, to_hf_state_dict) bound to the
  family `module_name`, for the family module to expose as its own."""

  def bind(fn):
    def bound(*args, **kwargs):
      return fn(importlib.import_module(module_name), *args, **kwargs)
    bound.__name__ = bound.__qualname__ = fn.__name__
    bound.__module__, bound.__doc__ = module_name, fn.__doc__
    return bound

  return tuple(bind(fn) for fn in (from_hf, from_state_dict, init_random, to_hf_state_dict))
