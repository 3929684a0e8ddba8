"""What every decoder family shares (llama.py and gpt2.py use it).

The KV cache, causal attention with padding and cache slots, the layer stack
(unrolled or scanned, with remat), dense layers, config checks common to the
families, and reading/writing HF tensors through a per-family table of
`HFTensor`s.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fjft.errors import CheckpointError, ConfigError
from fjft.models.layers.dropout import dropout
from fjft.models.layers.linear import Axes, param
from fjft.models.layers.matmul import matmul
from fjft.models.params import flat_params
from fjft.weights import safetensors_io
from fjft.weights.hf_config import read_hf_config

ATTENTION_IMPLS = (None, "xla", "cudnn")
REMAT_POLICIES = ("none", "full", "dots_saveable")


# --------------------------------------------------------------- KV cache ----


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Cache:
  """Keys and values of every layer, [num_layers, B, max_len, kv_heads, D].

  Slots are absolute: the model writes new tokens at `cache_index`; which
  slots hold real tokens is the caller's `kv_mask`.
  """

  k: jax.Array
  v: jax.Array


def new_cache(num_layers: int, batch: int, max_len: int, kv_heads: int,
              head_dim: int, dtype: jnp.dtype) -> Cache:
  shape = (num_layers, batch, max_len, kv_heads, head_dim)
  return Cache(k=jnp.zeros(shape, dtype), v=jnp.zeros(shape, dtype))


# -------------------------------------------------------------- attention ----


def attention_mask(q_slots: jax.Array, kv_len: int, kv_mask: jax.Array | None,
                   sliding_window: int | None,
                   segment_ids: jax.Array | None = None) -> jax.Array:
  """Boolean [B or 1, 1, T, S]: which key slots each query may attend to.

  Query t sits at slot q_slots[t]; it sees slots s <= q_slots[t] (within the
  sliding window, if any) whose kv_mask is True and, with `segment_ids`
  ([B, T], no cache: packed examples), whose segment is the query's own. Its
  own slot is always visible: real tokens have it in kv_mask anyway, and a
  padding query then never has an empty row, whose softmax would be NaN on
  some backends.
  """
  s = jnp.arange(kv_len)[None, :]
  q = q_slots[:, None]
  allowed = s <= q
  if sliding_window is not None:
    allowed &= s > q - sliding_window
  allowed = allowed[None]  # [1, T, S]
  if kv_mask is not None:
    allowed = allowed & (kv_mask.astype(bool)[:, None, :] | (s == q)[None])
  if segment_ids is not None:
    allowed = allowed & (segment_ids[:, :, None] == segment_ids[:, None, :])
  return allowed[:, None]


def attend(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array, *,
           impl: str | None, dropout_rate: float,
           key: jax.Array | None) -> jax.Array:
  """Grouped-query attention: q [B,T,N,D], k/v [B,S,K,D] -> [B,T,N,D]."""
  k, v = k.astype(q.dtype), v.astype(q.dtype)
  if key is None or dropout_rate == 0.0:
    return jax.nn.dot_product_attention(q, k, v, mask=mask,
                                        implementation=impl)
  # jax.nn.dot_product_attention cannot drop attention probabilities, so
  # training with attention dropout runs the same math as plain XLA ops.
  b, t, n, d = q.shape
  groups = n // k.shape[2]
  qg = q.reshape(b, t, k.shape[2], groups, d)
  logits = jnp.einsum("btkgd,bskd->bkgts", qg, k,
                      preferred_element_type=jnp.float32) * d ** -0.5
  logits = jnp.where(mask[:, :, None], logits, jnp.finfo(jnp.float32).min)
  probs = dropout(jax.nn.softmax(logits, axis=-1), dropout_rate, key)
  out = jnp.einsum("bkgts,bskd->btkgd", probs.astype(v.dtype), v)
  return out.reshape(b, t, n, d)


def update_cache_layer(kv_all: jax.Array, new: jax.Array, layer: jax.Array,
                       cache_index: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Writes new [B,T,K,D] into layer `layer` at slot `cache_index`.

  Returns (the updated [L,B,M,K,D] array, that layer's [B,M,K,D] slice).
  One dynamic_update_slice on the whole array, so a donated cache is
  updated in place rather than copied per layer.
  """
  zero = jnp.zeros((), jnp.int32)
  start = (jnp.asarray(layer, jnp.int32), zero,
           jnp.asarray(cache_index, jnp.int32), zero, zero)
  kv_all = jax.lax.dynamic_update_slice(
      kv_all, new.astype(kv_all.dtype)[None], start)
  return kv_all, jax.lax.dynamic_index_in_dim(kv_all, layer, 0,
                                              keepdims=False)


def slots_and_cache(cfg_layers: int, t: int, cache: Cache | None,
                    cache_index: jax.Array | None, kv_mask: jax.Array | None,
                    sliding_window: int | None,
                    segment_ids: jax.Array | None = None):
  """(mask [B|1,1,T,S], kv carry or None, cache_index) for one call."""
  if segment_ids is not None and (cache is not None or segment_ids.shape[-1] != t):
    raise ValueError("segment_ids (packed training rows) need no cache and T"
                     f"={t} entries per row, got shape {segment_ids.shape}")
  if cache is None:
    if kv_mask is not None and kv_mask.shape[-1] != t:
      raise ValueError(f"kv_mask has {kv_mask.shape[-1]} slots; without a"
                       f" cache it must have T={t}")
    cache_index = jnp.zeros((), jnp.int32)
    kv, kv_len = None, t
  else:
    if cache.k.shape[0] != cfg_layers:
      raise ValueError(f"cache has {cache.k.shape[0]} layers, the model"
                       f" {cfg_layers}")
    cache_index = jnp.asarray(0 if cache_index is None else cache_index,
                              jnp.int32)
    kv, kv_len = (cache.k, cache.v), cache.k.shape[2]
    if kv_mask is not None and kv_mask.shape[-1] != kv_len:
      raise ValueError(f"kv_mask has {kv_mask.shape[-1]} slots; with a cache"
                       f" it must have max_len={kv_len}")
  q_slots = cache_index + jnp.arange(t, dtype=jnp.int32)
  return attention_mask(q_slots, kv_len, kv_mask, sliding_window,
                        segment_ids), kv, cache_index


def write_cache(kv: tuple[jax.Array, jax.Array] | None, k: jax.Array,
                v: jax.Array, layer: jax.Array, cache_index: jax.Array):
  """(k, v, kv): what a layer attends over, and the updated cache carry.

  Without a cache (kv None) that is the new k/v; with one, the new k/v are
  written at `cache_index` and the layer's whole cache slice is attended.
  """
  if kv is None:
    return k, v, kv
  k_all, k = update_cache_layer(kv[0], k, layer, cache_index)
  v_all, v = update_cache_layer(kv[1], v, layer, cache_index)
  return k, v, (k_all, v_all)


# ----------------------------------------------------------------- layers ----


def fold(key: jax.Array | None, i: int | jax.Array) -> jax.Array | None:
  return None if key is None else jax.random.fold_in(key, i)


def remat_policy(name: str):
  return {"full": None,
          "dots_saveable": jax.checkpoint_policies.dots_saveable}[name]


def run_layers(layers: nnx.Module, num_layers: int, scan: bool, remat: str,
               x: jax.Array, carry: Any,
               call: Callable[[nnx.Module, jax.Array, Any, jax.Array],
                              tuple[jax.Array, Any]]) -> tuple[jax.Array, Any]:
  """Applies every layer: x, carry = call(layer, x, carry, layer_index).

  `layers` is an nnx.List of layers, or (scan=True) one layer whose params
  carry a leading [num_layers] axis, run under jax.lax.scan. The layer index
  is a traced int32 in both modes, so one program serves both and dropout
  keys folded from it agree. `remat` wraps each layer in jax.checkpoint.
  """

  def apply(graphdef, state, x, carry, i):
    return call(nnx.merge(graphdef, state), x, carry, i)

  if remat != "none":
    # prevent_cse is only needed outside scan (jax's own advice).
    apply = jax.checkpoint(apply, policy=remat_policy(remat),
                           prevent_cse=not scan, static_argnums=(0,))
  if scan:
    graphdef, state = nnx.split(layers)

    def body(c, layer_state):
      x, carry, i = c
      x, carry = apply(graphdef, layer_state, x, carry, i)
      return (x, carry, i + 1), None

    (x, carry, _), _ = jax.lax.scan(
        body, (x, carry, jnp.zeros((), jnp.int32)), state, length=num_layers)
    return x, carry
  for i, layer in enumerate(layers):
    graphdef, state = nnx.split(layer)
    x, carry = apply(graphdef, state, x, carry, jnp.asarray(i, jnp.int32))
  return x, carry


class Embed(nnx.Module):

  def __init__(self, num: int, dim: int, axes: Axes, init_std: float, *,
               rngs: nnx.Rngs):
    self.embedding = param(rngs, jax.nn.initializers.normal(init_std),
                           (num, dim), axes, None)


def make_layers(cfg, block_cls, rngs):
  """num_layers blocks: an nnx.List, or one stacked block for scan_layers."""
  if cfg.scan_layers:
    return block_cls(cfg, stack=cfg.num_layers, rngs=rngs)
  return nnx.List([block_cls(cfg, rngs=rngs) for _ in range(cfg.num_layers)])



@dataclasses.dataclass(frozen=True)
class Features:
  """What a decoder computes before its vocabulary projection.

  hidden: final normed hidden states [B, T, H] in the compute dtype; head:
  [H, vocab] (the tied embedding transposed, or lm_head); cache: the new Cache
  or None. Losses over large vocabularies project in chunks from here
  (fjft.tasks.lm_loss) instead of holding all [B, T, vocab] logits.
  """
  hidden: jax.Array
  head: jax.Array
  cache: Cache | None
  compute_dtype: Any

  def logits(self) -> jax.Array:
    return matmul(self.hidden, self.head, self.compute_dtype,
                  out_dtype=jnp.float32).astype(jnp.float32)


def features(x: jax.Array, head: jax.Array, dtype: jnp.dtype,
             kv: tuple[jax.Array, jax.Array] | None) -> Features:
  """Features of x [B, T, H] and the kv carry out of run_layers."""
  return Features(x, head, None if kv is None else Cache(*kv), dtype)


# ----------------------------------------------------------------- config ----

# Marks a required field in a family's (field, HF key, default) table.
REQUIRED = object()


def hf_kwargs(d: Mapping[str, Any], fields: Sequence[tuple[str, str, Any]]
              ) -> dict[str, Any]:
  """Config field -> value read from an HF config dict, per `fields`.

  Raises:
    ConfigError: a REQUIRED field's HF key is absent.
  """
  missing = [hf for _, hf, default in fields
             if default is REQUIRED and hf not in d]
  if missing:
    raise ConfigError(f"HF config lacks required fields {missing}")
  return {f: d.get(hf, default) for f, hf, default in fields}


def check_positive_ints(cfg: Any, names: Sequence[str]) -> None:
  for name in names:
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ConfigError(f"{name} must be a positive int, got {value!r}")


def check_runtime_options(cfg: Any, dropout_names: Sequence[str]) -> None:
  """Validates attention_impl, remat and the named dropout rates of `cfg`."""
  if cfg.attention_impl not in ATTENTION_IMPLS:
    raise ConfigError(f"attention_impl {cfg.attention_impl!r} is not one"
                      f" of {list(ATTENTION_IMPLS)}")
  if cfg.remat not in REMAT_POLICIES:
    raise ConfigError(f"remat {cfg.remat!r} is not one of"
                      f" {list(REMAT_POLICIES)}")
  for name in dropout_names:
    if not 0.0 <= getattr(cfg, name) < 1.0:
      raise ConfigError(f"{name} must be in [0, 1), got"
                        f" {getattr(cfg, name)}")


# ------------------------------------------------------ HF tensor mapping ----


@dataclasses.dataclass(frozen=True)
class HFTensor:
  """One param <-> one HF tensor. Per-layer entries have "{i}" in hf_key.

  path: our param path (per-layer: inside the layer).
  hf_shape: the HF tensor's shape.
  to_ours / to_hf: layout conversions (numpy).
  """

  path: tuple[str, ...]
  hf_key: str
  hf_shape: tuple[int, ...]
  to_ours: Callable[[np.ndarray], np.ndarray]
  to_hf: Callable[[np.ndarray], np.ndarray]

  @property
  def per_layer(self) -> bool:
    return "{i}" in self.hf_key


def same(a: np.ndarray) -> np.ndarray:
  return a


def transpose(a: np.ndarray) -> np.ndarray:
  return a.T


def _layer_path(t: HFTensor, i: int, scan: bool) -> tuple[str, ...]:
  return ("layers", *t.path) if scan else ("layers", str(i), *t.path)


def load_values(table: Sequence[HFTensor], num_layers: int, scan: bool,
                tensors: Mapping[str, np.ndarray], source: Mapping[str, str],
                where: str, ignorable: Callable[[str], bool],
                ) -> dict[tuple[str, ...], np.ndarray]:
  """Our param path -> float32 value, from HF tensors keyed by HF name.

  Raises:
    CheckpointError: a tensor is missing, mis-shaped, or not part of the
      model (names the file holding it, or `where`, and the tensor).
  """
  used: set[str] = set()

  def get(key: str, shape: tuple[int, ...]) -> np.ndarray:
    if key not in tensors:
      raise CheckpointError(f"{where}: missing tensor {key!r} (expected shape"
                            f" {shape})")
    arr = tensors[key]
    if tuple(arr.shape) != tuple(shape):
      raise CheckpointError(f"{source.get(key, where)}: tensor {key!r} has"
                            f" shape {tuple(arr.shape)}, expected {shape}")
    used.add(key)
    return np.asarray(arr, np.float32)

  values: dict[tuple[str, ...], np.ndarray] = {}
  for t in table:
    if not t.per_layer:
      values[t.path] = t.to_ours(get(t.hf_key, t.hf_shape))
      continue
    per_layer = [t.to_ours(get(t.hf_key.format(i=i), t.hf_shape))
                 for i in range(num_layers)]
    if scan:
      values[_layer_path(t, 0, True)] = np.stack(per_layer)
    else:
      for i, v in enumerate(per_layer):
        values[_layer_path(t, i, False)] = v
  unexpected = sorted(k for k in set(tensors) - used if not ignorable(k))
  if unexpected:
    k = unexpected[0]
    raise CheckpointError(
        f"{source.get(k, where)}: unexpected tensor {k!r} (shape"
        f" {tuple(tensors[k].shape)}), not part of this model as its config"
        f" describes it ({len(unexpected)} unexpected in all:"
        f" {unexpected[:5]})")
  return values


def export_values(table: Sequence[HFTensor], num_layers: int, scan: bool,
                  model_state: Any) -> dict[str, np.ndarray]:
  """HF name -> float32 array in HF layout, the inverse of load_values."""
  flat = flat_params(model_state)
  out = {}
  for t in table:
    if not t.per_layer:
      out[t.hf_key] = t.to_hf(flat[t.path])
      continue
    for i in range(num_layers):
      value = flat[_layer_path(t, i, scan)]
      out[t.hf_key.format(i=i)] = t.to_hf(value[i] if scan else value)
  return {k: np.ascontiguousarray(v, np.float32) for k, v in out.items()}


def linear_names(table: Sequence[HFTensor], num_layers: int) -> dict[str, tuple[str, ...]]:
  """Dotted path of each Linear ("layers.3.self_attn.q_proj", per layer even when layers
  are stacked) -> its HF module name, from a family's HF table (PEFT adapter keys)."""
  out = {}
  for t in table:
    if t.path[-1] != "kernel":
      continue
    module, rest = t.hf_key[:-len(".weight")], ".".join(t.path[:-1])
    if t.per_layer:
      out.update({f"layers.{i}.{rest}": (module.format(i=i),) for i in range(num_layers)})
    else:
      out[rest] = (module,)
  return out


def build(model_cls, cfg, values: Mapping[tuple[str, ...], np.ndarray],
          random_value: Callable[[tuple[str, ...], tuple[int, ...],
                                  np.random.Generator], np.ndarray],
          seed: int):
  """A model holding `values`; params absent from it are drawn at random.

  Builds abstractly and fills in numpy arrays: no initialiser runs, so no
  per-shape XLA compiles.
  """
  abstract = nnx.eval_shape(lambda: model_cls(cfg, rngs=nnx.Rngs(0)))
  graphdef, state = nnx.split(abstract)
  rng = np.random.default_rng(seed)
  for p, var in nnx.to_flat_state(state):
    path = tuple(str(x) for x in p)
    value = values.get(path)
    if value is None:
      value = random_value(path, var.get_value().shape, rng)
    var.set_value(jnp.asarray(value))
  return nnx.merge(graphdef, state)


def read_hf_tensors(path: str | Path
                    ) -> tuple[dict[str, np.ndarray], dict[str, str], str]:
  """(tensors, tensor -> its file, the files in words) of an HF folder."""
  folder = Path(path)
  files = safetensors_io.safetensors_files(folder)
  tensors: dict[str, np.ndarray] = {}
  source: dict[str, str] = {}
  for f in files:
    for k, v in safetensors_io.read_safetensors_file(f).items():
      if k in tensors:
        raise CheckpointError(f"{f}: tensor {k!r} also appears in"
                              f" {source[k]}")
      tensors[k], source[k] = v, str(f)
  where = str(files[0]) if len(files) == 1 else f"{folder} (sharded)"
  return tensors, source, where


def make_config(config_cls: type, hf_config: Mapping[str, Any], source: str,
                runtime_options: Mapping[str, Any]) -> Any:
  """config_cls.from_hf(hf_config, **runtime_options), errors located.

  A ConfigError gets `source` (where the config came from) prefixed.
  """
  try:
    return config_cls.from_hf(hf_config, **runtime_options)
  except ConfigError as e:
    raise ConfigError(f"{source}: {e}") from e


def config_of_folder(config_cls: type, path: str | Path,
                     runtime_options: Mapping[str, Any]) -> Any:
  """The config_cls of an HF folder's config.json, as make_config."""
  # Read before any tensor: an unsupported model fails before the load.
  return make_config(config_cls, read_hf_config(path),
                     str(Path(path) / "config.json"), runtime_options)


def with_prefix(tensors: Mapping[str, np.ndarray], source: Mapping[str, str],
                where: str, prefix: str
                ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
  """(tensors, tensor -> its file) keyed by the full ForCausalLM names.

  Checkpoints of the bare base model (no LM head) lack the `prefix` (such as
  "model.") that every name but lm_head.weight has in the ForCausalLM one.

  Raises:
    CheckpointError: a tensor appears both with and without the prefix.
  """
  canonical: dict[str, np.ndarray] = {}
  canonical_source: dict[str, str] = {}
  for k, v in tensors.items():
    c = k if k.startswith(prefix) or k == "lm_head.weight" else prefix + k
    if c in canonical:
      raise CheckpointError(f"{source.get(k, where)}: tensor {k!r} appears"
                            f" both with and without the {prefix!r} prefix")
    canonical[c], canonical_source[c] = v, source.get(k, where)
  return canonical, canonical_source


def hf_init(std: Callable[[tuple[str, ...]], float]):
  """A `build` random_value drawing as HF's _init_weights.

  Kernels and embeddings ~ N(0, std(their path)), norm scales 1, biases 0.
  """
  def draw(path, shape, rng):
    if path[-1] in ("kernel", "embedding"):
      return rng.normal(0.0, std(path), shape).astype(np.float32)
    return np.full(shape, 1.0 if path[-1] == "scale" else 0.0, np.float32)
  return draw
