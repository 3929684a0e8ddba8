"""LoRA adapters and quantised bases on any model built from fjft.models.linear.Linear.

Works on the module tree, before nnx.split: `add_lora` gives each chosen Linear an
adapter (lora_a [in, r] drawn as PEFT does, lora_b [r, *out] zero, so a new adapter
changes nothing), `quantize_base` stores chosen kernels in a fjft.models.quant format, and
`merge` folds both back into plain float32 kernels (export, fast inference). A Linear of
stacked layers (scan_layers) gets stacked adapters, one per layer.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import jax
import jax.numpy as jnp
from flax import nnx

from fjft.errors import ConfigError
from fjft.models.layers import quant
from fjft.models.layers.linear import Linear

ADAPTER_PARAMS = ("lora_a", "lora_b")


def linears(model: nnx.Module) -> Iterator[tuple[str, Linear]]:
  """(dotted path, module) of every Linear in `model`, in a fixed order."""
  for path, module in nnx.iter_modules(model):
    if isinstance(module, Linear):
      yield ".".join(str(p) for p in path), module


def _matching(model: nnx.Module, target: str, field: str) -> list[tuple[str, Linear]]:
  try:
    rx = re.compile(target)
  except re.error as e:
    raise ConfigError(f"config field {field}: {target!r} is not a regular expression ({e})"
                      ) from None
  found = [(path, m) for path, m in linears(model) if rx.search(path)]
  if not found:
    examples = [path for path, _ in linears(model)][:4]
    raise ConfigError(f"config field {field}={target!r} matches no Linear layer (their paths "
                      f"look like {examples})")
  return found


def _axes(var: nnx.Param) -> tuple:
  return tuple(var.get_metadata().get("out_sharding") or (None,) * var.get_value().ndim)


def _stacked(module: Linear) -> bool:
  return _axes(module.kernel)[:1] == ("layers",)


def _per_layer(fn, module: Linear):
  """fn over one layer's arrays, mapped over the leading layer axis of a stacked Linear."""
  return jax.vmap(fn) if _stacked(module) else fn


def add_lora(model: nnx.Module, *, rank: int, alpha: float, dropout: float, target: str,
             seed: int) -> list[str]:
  """Adds an adapter to every Linear whose path `target` matches; returns their paths."""
  if rank < 1:
    raise ConfigError(f"config field peft.rank must be >= 1 (got {rank})")
  if not 0.0 <= dropout < 1.0:
    raise ConfigError(f"config field peft.dropout must be in [0, 1) (got {dropout})")
  key = jax.random.key(seed)
  paths = []
  for i, (path, m) in enumerate(_matching(model, target, "peft.target")):
    if m.lora_a is not None:
      raise ConfigError(f"{path}: already has a LoRA adapter")
    axes = _axes(m.kernel)
    lead = 1 if _stacked(m) else 0
    shape = m.kernel.get_value().shape   # nf4 packs the inputs: count them with _in_features
    layers, n_in, out = shape[:lead], _in_features(m), shape[lead + 1:]
    # PEFT's default: A ~ kaiming_uniform(a=sqrt(5)), i.e. U(-1/sqrt(in), 1/sqrt(in)); B = 0
    bound = n_in ** -0.5
    a = jax.random.uniform(jax.random.fold_in(key, i), (*layers, n_in, rank),
                           jnp.float32, -bound, bound)
    m.lora_a = nnx.Param(a, out_sharding=(*axes[:lead], axes[lead], None), eager_sharding=False)
    m.lora_b = nnx.Param(jnp.zeros((*layers, rank, *out), jnp.float32),
                         out_sharding=(*axes[:lead], None, *axes[lead + 1:]),
                         eager_sharding=False)
    m.lora_scale = float(alpha) / rank
    m.lora_dropout = float(dropout)
    paths.append(path)
  return paths


def _in_features(m: Linear) -> int:
  lead = 1 if _stacked(m) else 0
  rows = m.kernel.get_value().shape[lead]
  return rows * 2 if m.quantized == "nf4" else rows


def quantize_base(model: nnx.Module, kind: str, target: str) -> list[str]:
  """Stores the kernel of every Linear `target` matches in format `kind` (fjft.models.quant);
  returns their paths. Call it before add_lora: adapters stay float32."""
  found = _matching(model, target, "peft.target")
  for path, m in found:
    quant.check(kind, _in_features(m), path)
    if m.lora_a is not None:
      raise ConfigError(f"{path}: quantise the base before adding adapters")
  for path, m in found:
    axes = _axes(m.kernel)
    lead = 1 if _stacked(m) else 0
    q, scale = _per_layer(lambda w: quant.quantize(w, kind), m)(m.kernel.get_value())
    scale_axes = ((*axes[:lead], None, *axes[lead + 1:]) if kind == "nf4"
                  else (*axes[:lead], *axes[lead + 1:]))
    m.kernel = nnx.Param(q, out_sharding=axes, eager_sharding=False)
    m.kernel_scale = nnx.Param(scale, out_sharding=scale_axes, eager_sharding=False)
    m.quantized = kind
  return [path for path, _ in found]


def float_kernel(m: Linear) -> jax.Array:
  """The layer's effective float32 kernel: dequantised, plus its adapter's A @ B * scale."""
  w = m.kernel.get_value()
  if m.quantized:
    w = _per_layer(lambda q, s: quant.dequantize(q, s, m.quantized), m)(
        w, m.kernel_scale.get_value())
  if m.lora_a is not None:
    def delta(a, b):
      return (a @ b.reshape(b.shape[0], -1)).reshape(a.shape[0], *b.shape[1:])
    w = w + m.lora_scale * _per_layer(delta, m)(m.lora_a.get_value(), m.lora_b.get_value())
  return jnp.asarray(w, jnp.float32)


def merge(model: nnx.Module) -> nnx.Module:
  """Folds every adapter and quantised kernel into a plain float32 kernel, in place: the
  model then has the parameter tree (and outputs) of a model without them."""
  for _, m in linears(model):
    if m.lora_a is None and not m.quantized:
      continue
    m.kernel = nnx.Param(float_kernel(m), out_sharding=_axes(m.kernel), eager_sharding=False)
    for name in ("lora_a", "lora_b", "kernel_scale", "lora_scale", "lora_dropout",
                 "quantized"):
      if name in vars(m):
        delattr(m, name)
  return model


def adapters(model: nnx.Module) -> dict[str, tuple[jax.Array, jax.Array]]:
  """{Linear path: (lora_a, lora_b)} of every adapter in `model`."""
  return {path: (m.lora_a.get_value(), m.lora_b.get_value())
          for path, m in linears(model) if m.lora_a is not None}
