"""BERT-family encoder (BERT, MiniLM, RoBERTa) in Flax NNX, with HF weights I/O.

Logical axis names. Every Param carries one name per dimension in its
`out_sharding` metadata; `nnx.get_partition_spec(nnx.state(model))` turns the
state into a tree of PartitionSpecs of these names (under
`nnx.logical_axis_rules(rules)` it maps them to mesh axes instead):

  "vocab"     rows of the word embedding table
  "embed"     the hidden (model) dimension
  "heads"     the fused num_heads * head_dim dimension of q/k/v and of the
              attention output projection's input
  "mlp"       the feed-forward intermediate dimension
  "position"  rows of the position embedding table
  "types"     rows of the token-type embedding table
  None        never sharded (the q/k/v selector of the fused kernel, the
              pooler's output dimension)

Params are created with `eager_sharding=False`: the model can be built and
loaded without a mesh; the trainer places the state from the spec tree.

Parameter tree (HF names in brackets; `to_hf_state_dict` and `from_hf` map
between the two, transposing Linear weights and (un)fusing q/k/v):

  embeddings.word_embeddings.embedding        [V, H]  (embeddings.word_embeddings.weight)
  embeddings.position_embeddings.embedding    [P, H]
  embeddings.token_type_embeddings.embedding  [Tv, H]
  embeddings.layer_norm.{scale,bias}          [H]     (embeddings.LayerNorm.*)
  layers.{i}.attention.qkv.kernel             [H, 3, H]  (attention.self.{query,key,value}.weight)
  layers.{i}.attention.qkv.bias               [3, H]
  layers.{i}.attention.output.{kernel,bias}   [H, H]  (attention.output.dense.*)
  layers.{i}.attention.layer_norm.*           [H]     (attention.output.LayerNorm.*)
  layers.{i}.intermediate.{kernel,bias}       [H, I]  (intermediate.dense.*)
  layers.{i}.output.{kernel,bias}             [I, H]  (output.dense.*)
  layers.{i}.output_layer_norm.*              [H]     (output.LayerNorm.*)
  pooler.{kernel,bias}                        [H, H]  (pooler.dense.*)

The fused q/k/v kernel is [H, 3, H] rather than [H, 3H]: the same bytes, so
the projection is still one matmul, but the head dimension stays its own axis
and can be sharded over "heads" without splitting across q, k and v.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fjft.errors import CheckpointError, ConfigError
from fjft.models.layers.dropout import dropout
from fjft.models.layers.linear import Axes, Linear, param
from fjft.models.params import flat_params
from fjft.weights import safetensors_io
from fjft.weights.hf_config import read_hf_config

log = logging.getLogger(__name__)



def _gelu_erf(x: jax.Array) -> jax.Array:
  """Exact GELU, x * Phi(x), written with erf as torch does.

  jax.nn.gelu(approximate=False) goes through erfc, whose CPU lowering (and
  its derivative) costs ~3x more than erf's; the values agree to float32
  rounding.
  """
  return x * (0.5 + 0.5 * jax.lax.erf(x * np.sqrt(0.5).astype(x.dtype)))


# HF `hidden_act` -> function. "gelu" is the exact erf form, as in HF.
_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "gelu": _gelu_erf,
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
}

# model_type -> first position id. RoBERTa numbers positions from
# pad_token_id + 1 (pads keep pad_token_id); BERT from 0.
_POSITION_OFFSET_FROM_PAD = {"bert": False, "roberta": True}

_ATTENTION_IMPLS = (None, "xla", "cudnn")


# ---------------------------------------------------------------- config ----

_REQUIRED = object()

# (Config field, HF config.json key, default). Defaults are HF BertConfig's.
_HF_FIELDS: tuple[tuple[str, str, Any], ...] = (
    ("vocab_size", "vocab_size", _REQUIRED),
    ("hidden_size", "hidden_size", _REQUIRED),
    ("num_layers", "num_hidden_layers", _REQUIRED),
    ("num_heads", "num_attention_heads", _REQUIRED),
    ("intermediate_size", "intermediate_size", _REQUIRED),
    ("max_position_embeddings", "max_position_embeddings", 512),
    ("type_vocab_size", "type_vocab_size", 2),
    ("layer_norm_eps", "layer_norm_eps", 1e-12),
    ("hidden_dropout", "hidden_dropout_prob", 0.1),
    ("attention_dropout", "attention_probs_dropout_prob", 0.1),
    ("hidden_act", "hidden_act", "gelu"),
    ("pad_token_id", "pad_token_id", 0),
    ("initializer_range", "initializer_range", 0.02),
    ("model_type", "model_type", "bert"),
)


def cudnn_key_lengths(attention_mask: jax.Array) -> jax.Array:
  """Per-row key lengths for cuDNN attention, which takes padding as lengths
  (right padding assumed).

  At least 1: a row with no tokens (the rows that fill out a short batch) would
  leave cuDNN's softmax nothing to normalise over and give NaN, which reaches
  the loss through 0 * NaN (seen on an H200: Banking77 training went NaN at the
  first short batch). Such rows weigh 0, so what they attend to does not matter.
  """
  return jnp.maximum(jnp.sum(attention_mask, axis=-1, dtype=jnp.int32), 1)


@dataclasses.dataclass(frozen=True)
class Config:
  """Architecture of a BERT-family encoder. Defaults are bert-base-uncased.

  `attention_impl` is a runtime choice, not part of the checkpoint: None lets
  jax pick (XLA on CPU), "cudnn" asks for cuDNN flash attention on GPU, which
  needs a 16-bit compute_dtype and assumes right-padded batches (padding is
  passed as per-row key lengths). While attention dropout is active (a
  dropout_key and attention_dropout > 0) attention runs as plain XLA ops,
  because jax.nn.dot_product_attention cannot drop attention probabilities;
  set attention_dropout=0.0 to keep the fused kernel in training.
  """

  vocab_size: int = 30522
  hidden_size: int = 768
  num_layers: int = 12
  num_heads: int = 12
  intermediate_size: int = 3072
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12
  hidden_dropout: float = 0.1
  attention_dropout: float = 0.1
  hidden_act: str = "gelu"
  pad_token_id: int = 0
  model_type: str = "bert"
  initializer_range: float = 0.02
  attention_impl: str | None = None

  def __post_init__(self):
    for f in dataclasses.fields(self):
      value = getattr(self, f.name)
      # Annotations are strings here (postponed evaluation).
      wanted = {"int": (int,), "float": (int, float), "str": (str,)}.get(f.type)
      if wanted and (isinstance(value, bool) or not isinstance(value, wanted)):
        raise ConfigError(f"{f.name} must be {f.type}, got {value!r}")
    if self.model_type not in _POSITION_OFFSET_FROM_PAD:
      raise ConfigError(
          f"model_type {self.model_type!r} is not a BERT-family type this"
          f" module implements; supported: {sorted(_POSITION_OFFSET_FROM_PAD)}")
    if self.hidden_size % self.num_heads:
      raise ConfigError(f"hidden_size {self.hidden_size} is not divisible by"
                        f" num_heads {self.num_heads}")
    if self.hidden_act not in _ACTIVATIONS:
      raise ConfigError(f"hidden_act {self.hidden_act!r} is not supported;"
                        f" supported: {sorted(_ACTIVATIONS)}")
    if self.attention_impl not in _ATTENTION_IMPLS:
      raise ConfigError(f"attention_impl {self.attention_impl!r} is not one"
                        f" of {list(_ATTENTION_IMPLS)}")
    for name in ("hidden_dropout", "attention_dropout"):
      if not 0.0 <= getattr(self, name) < 1.0:
        raise ConfigError(f"{name} must be in [0, 1), got"
                          f" {getattr(self, name)}")

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_heads

  @property
  def position_offset(self) -> int:
    """Position id of the first token (pad_token_id + 1 for RoBERTa)."""
    if _POSITION_OFFSET_FROM_PAD[self.model_type]:
      return self.pad_token_id + 1
    return 0

  @classmethod
  def from_hf(cls, d: Mapping[str, Any]) -> Config:
    """Builds a Config from the dict of an HF config.json."""
    missing = [hf for _, hf, default in _HF_FIELDS
               if default is _REQUIRED and hf not in d]
    if missing:
      raise ConfigError(f"HF config lacks required fields {missing}")
    pos_type = d.get("position_embedding_type", "absolute")
    if pos_type != "absolute":
      raise ConfigError(f"position_embedding_type {pos_type!r} is not"
                        " supported; only 'absolute'")
    kwargs = {f: d.get(hf, default) for f, hf, default in _HF_FIELDS}
    if kwargs["pad_token_id"] is None:
      kwargs["pad_token_id"] = 0
    return cls(**kwargs)

  def to_hf(self) -> dict[str, Any]:
    """Returns the HF config.json fields (without architectures/labels)."""
    d = {hf: getattr(self, f) for f, hf, _ in _HF_FIELDS}
    d["position_embedding_type"] = "absolute"
    return d


# --------------------------------------------------------------- modules ----


def _fold(key: jax.Array | None, i: int) -> jax.Array | None:
  return None if key is None else jax.random.fold_in(key, i)


class LayerNorm(nnx.Module):
  """LayerNorm whose statistics are always computed in float32."""

  def __init__(self, dim: int, eps: float, *, rngs: nnx.Rngs):
    self.eps = eps
    self.scale = param(rngs, jax.nn.initializers.ones, (dim,), ("embed",), None)
    self.bias = param(rngs, jax.nn.initializers.zeros, (dim,), ("embed",), None)

  def __call__(self, x: jax.Array, dtype: jnp.dtype) -> jax.Array:
    x = x.astype(jnp.float32)
    mean = jnp.mean(x, axis=-1, keepdims=True)
    centered = x - mean
    var = jnp.mean(jnp.square(centered), axis=-1, keepdims=True)
    y = centered * jax.lax.rsqrt(var + self.eps)
    return (y * self.scale[...] + self.bias[...]).astype(dtype)


class Embed(nnx.Module):

  def __init__(self, num: int, dim: int, axes: Axes, init_std: float, *,
               rngs: nnx.Rngs):
    self.embedding = param(rngs, jax.nn.initializers.normal(init_std),
                           (num, dim), axes, None)


class Embeddings(nnx.Module):
  """Word + position + token-type embeddings, then LayerNorm and dropout."""

  def __init__(self, cfg: Config, *, rngs: nnx.Rngs):
    std = cfg.initializer_range
    self.word_embeddings = Embed(cfg.vocab_size, cfg.hidden_size,
                                 ("vocab", "embed"), std, rngs=rngs)
    self.position_embeddings = Embed(cfg.max_position_embeddings,
                                     cfg.hidden_size, ("position", "embed"),
                                     std, rngs=rngs)
    self.token_type_embeddings = Embed(cfg.type_vocab_size, cfg.hidden_size,
                                       ("types", "embed"), std, rngs=rngs)
    self.layer_norm = LayerNorm(cfg.hidden_size, cfg.layer_norm_eps,
                                rngs=rngs)

  def __call__(self, cfg: Config, input_ids: jax.Array,
               token_type_ids: jax.Array | None, key: jax.Array | None,
               dtype: jnp.dtype) -> jax.Array:
    seq_len = input_ids.shape[1]
    offset = cfg.position_offset
    if seq_len + offset > cfg.max_position_embeddings:
      raise ConfigError(
          f"sequence length {seq_len} exceeds what the model's"
          f" max_position_embeddings={cfg.max_position_embeddings} allows"
          f" ({cfg.max_position_embeddings - offset})")
    x = jnp.take(self.word_embeddings.embedding[...], input_ids, axis=0)
    positions = self.position_embeddings.embedding[...]
    if offset:
      # As HF create_position_ids_from_input_ids: pads keep the pad id.
      not_pad = (input_ids != cfg.pad_token_id).astype(jnp.int32)
      ids = jnp.cumsum(not_pad, axis=1) * not_pad + cfg.pad_token_id
      x = x + jnp.take(positions, ids, axis=0)
    else:
      # A static slice: its gradient is a pad, not a scatter.
      x = x + positions[None, :seq_len]
    types = self.token_type_embeddings.embedding[...]
    if token_type_ids is None:
      x = x + types[0]
    else:
      x = x + jnp.take(types, token_type_ids, axis=0)
    return dropout(self.layer_norm(x, dtype), cfg.hidden_dropout, key)


class SelfAttention(nnx.Module):
  """Fused-QKV multi-head self-attention, output projection, residual, norm."""

  def __init__(self, cfg: Config, *, rngs: nnx.Rngs):
    h, std = cfg.hidden_size, cfg.initializer_range
    self.qkv = Linear(h, (3, h), ("embed", None, "heads"), (None, "heads"),
                      std, stack=None, rngs=rngs)
    self.output = Linear(h, (h,), ("heads", "embed"), ("embed",), std,
                         stack=None, rngs=rngs)
    self.layer_norm = LayerNorm(h, cfg.layer_norm_eps, rngs=rngs)

  def __call__(self, cfg: Config, x: jax.Array, attention_mask: jax.Array,
               key: jax.Array | None, dtype: jnp.dtype) -> jax.Array:
    b, t, _ = x.shape
    # adapters' dropout keys: folded at indices the layer's own dropout does not use
    qkv = self.qkv(x, dtype, _fold(key, 10)).reshape(b, t, 3, cfg.num_heads, cfg.head_dim)
    # split (not indexing): its gradient is one concatenate, not three pads
    # summed.
    q, k, v = (y.squeeze(2) for y in jnp.split(qkv, 3, axis=2))
    probs_key = _fold(key, 0)
    if probs_key is not None and cfg.attention_dropout > 0.0:
      # jax.nn.dot_product_attention has no dropout on the probabilities.
      ctx = _attention_with_dropout(q, k, v, attention_mask,
                                    cfg.attention_dropout, probs_key)
    elif cfg.attention_impl == "cudnn":
      ctx = jax.nn.dot_product_attention(
          q, k, v, key_value_seq_lengths=cudnn_key_lengths(attention_mask),
          implementation="cudnn")
    else:
      mask = attention_mask.astype(bool)[:, None, None, :]
      ctx = jax.nn.dot_product_attention(q, k, v, mask=mask,
                                         implementation=cfg.attention_impl)
    out = self.output(ctx.reshape(b, t, cfg.hidden_size), dtype, _fold(key, 11))
    out = dropout(out, cfg.hidden_dropout, _fold(key, 1))
    return self.layer_norm(out + x, dtype)


def _attention_with_dropout(q, k, v, attention_mask, rate, key):
  """Same math as jax's XLA attention, plus dropout on the probabilities."""
  scale = q.shape[-1] ** -0.5
  logits = jnp.einsum("btnd,bsnd->bnts", q, k,
                      preferred_element_type=jnp.float32) * scale
  mask = attention_mask.astype(bool)[:, None, None, :]
  logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
  probs = dropout(jax.nn.softmax(logits, axis=-1), rate, key)
  return jnp.einsum("bnts,bsnd->btnd", probs.astype(v.dtype), v)


class Layer(nnx.Module):
  """One post-norm transformer encoder layer."""

  def __init__(self, cfg: Config, *, rngs: nnx.Rngs):
    h, i, std = cfg.hidden_size, cfg.intermediate_size, cfg.initializer_range
    self.attention = SelfAttention(cfg, rngs=rngs)
    self.intermediate = Linear(h, (i,), ("embed", "mlp"), ("mlp",), std,
                               stack=None, rngs=rngs)
    self.output = Linear(i, (h,), ("mlp", "embed"), ("embed",), std, stack=None,
                         rngs=rngs)
    self.output_layer_norm = LayerNorm(h, cfg.layer_norm_eps, rngs=rngs)

  def __call__(self, cfg: Config, x: jax.Array, attention_mask: jax.Array,
               key: jax.Array | None, dtype: jnp.dtype) -> jax.Array:
    h = self.attention(cfg, x, attention_mask, _fold(key, 0), dtype)
    y = _ACTIVATIONS[cfg.hidden_act](self.intermediate(h, dtype, _fold(key, 10)))
    y = dropout(self.output(y, dtype, _fold(key, 11)), cfg.hidden_dropout, _fold(key, 1))
    return self.output_layer_norm(y + h, dtype)


def _make_pooler(cfg: Config, rngs: nnx.Rngs) -> Linear:
  return Linear(cfg.hidden_size, (cfg.hidden_size,), ("embed", None), (None,),
                cfg.initializer_range, stack=None, rngs=rngs)


class Model(nnx.Module):
  """BERT-family encoder returning (sequence_output, pooled_output)."""

  def __init__(self, cfg: Config, *, rngs: nnx.Rngs):
    self.cfg = cfg
    self.embeddings = Embeddings(cfg, rngs=rngs)
    self.layers = nnx.List([Layer(cfg, rngs=rngs)
                            for _ in range(cfg.num_layers)])
    self.pooler = _make_pooler(cfg, rngs)

  def __call__(self, input_ids: jax.Array, attention_mask: jax.Array,
               token_type_ids: jax.Array | None = None, *,
               dropout_key: jax.Array | None = None,
               compute_dtype: jnp.dtype = jnp.float32,
               ) -> tuple[jax.Array, jax.Array]:
    """Encodes a batch.

    Args:
      input_ids: int [B, T].
      attention_mask: [B, T], 1 for real tokens, 0 for padding.
      token_type_ids: int [B, T] or None (all segment 0).
      dropout_key: a jax PRNG key enables dropout (training); None disables
        it. Per-layer keys are derived with fold_in; no Rngs state changes.
      compute_dtype: dtype of matmuls and activations (e.g. jnp.bfloat16).
        LayerNorm statistics and softmax stay float32; params are not cast.

    Returns:
      sequence_output [B, T, H] and pooled_output [B, H] = tanh(dense(x[:, 0]))
      as HF BertPooler, both in compute_dtype.
    """
    cfg = self.cfg
    x = self.embeddings(cfg, input_ids, token_type_ids,
                        _fold(dropout_key, 0), compute_dtype)
    for i, layer in enumerate(self.layers):
      x = layer(cfg, x, attention_mask, _fold(dropout_key, i + 1),
                compute_dtype)
    pooled = jnp.tanh(self.pooler(x[:, 0], compute_dtype))
    return x, pooled


def _random_value(path: tuple[str, ...], shape: tuple[int, ...], cfg: Config,
                  rng: np.random.Generator) -> np.ndarray:
  # HF BertPreTrainedModel._init_weights, which Model's initialisers follow:
  # kernels and embeddings ~ N(0, initializer_range), LayerNorm scale 1,
  # every bias 0.
  if path[-1] in ("kernel", "embedding"):
    return rng.normal(0.0, cfg.initializer_range, shape).astype(np.float32)
  return np.full(shape, 1.0 if path[-1] == "scale" else 0.0, np.float32)


def _build(cfg: Config, values: Mapping[tuple[str, ...], np.ndarray],
           seed: int, may_be_random: Callable[[tuple[str, ...]], bool]
           ) -> Model:
  """A Model holding `values`; params absent from it are drawn at random.

  Builds abstractly and fills in numpy arrays: no initialiser runs, so no
  per-shape XLA compiles (eager nnx init of a fresh process takes seconds).
  """
  abstract = nnx.eval_shape(lambda: Model(cfg, rngs=nnx.Rngs(0)))
  graphdef, state = nnx.split(abstract)
  rng = np.random.default_rng(seed)
  for p, var in nnx.to_flat_state(state):
    path = tuple(str(x) for x in p)
    value = values.get(path)
    if value is None:
      if not may_be_random(path):  # Only if _hf_layout and Model disagree.
        raise AssertionError(f"param {'.'.join(path)} has no HF mapping")
      value = _random_value(path, var.get_value().shape, cfg, rng)
    var.set_value(jnp.asarray(value))
  return nnx.merge(graphdef, state)


def init_random(cfg: Config, seed: int = 0) -> Model:
  """A randomly initialised model, HF-style, fast to build (numpy RNG).

  Same distributions as Model(cfg, rngs=nnx.Rngs(seed)), different draws.
  """
  return _build(cfg, {}, seed, may_be_random=lambda path: True)


# ------------------------------------------------------ HF weight mapping ----

_Arrays = Sequence[np.ndarray]

# kind -> (HF tensors -> our param, our param -> HF tensors). HF Linear
# weights are [out, in]; ours are [in, out].
_CONVERT: dict[str, tuple[Callable[[_Arrays], np.ndarray],
                          Callable[[np.ndarray], list[np.ndarray]]]] = {
    "copy": (lambda a: a[0], lambda p: [p]),
    "linear": (lambda a: a[0].T, lambda p: [p.T]),
    "qkv_kernel": (lambda a: np.stack([w.T for w in a], axis=1),
                   lambda p: [p[:, j, :].T for j in range(3)]),
    "qkv_bias": (lambda a: np.stack(a, axis=0),
                 lambda p: [p[j] for j in range(3)]),
}

# Older BERT checkpoints (TF conversions) name LayerNorm params gamma/beta.
_LEGACY_SUFFIXES = {".LayerNorm.weight": ".LayerNorm.gamma",
                    ".LayerNorm.bias": ".LayerNorm.beta"}

_IGNORED_KEYS = ("embeddings.position_ids",)


@dataclasses.dataclass(frozen=True)
class _Tensor:
  path: tuple[str, ...]  # our param path, str parts
  hf_keys: tuple[str, ...]  # HF BertModel keys, without the model prefix
  hf_shape: tuple[int, ...]  # shape of each HF tensor
  kind: str  # key of _CONVERT
  optional: bool = False  # may be absent from a checkpoint (pooler)


def _hf_layout(cfg: Config) -> list[_Tensor]:
  """The one table mapping every param to its HF tensor(s)."""
  h, inter = cfg.hidden_size, cfg.intermediate_size

  def linear(path, hf, n_in, n_out, optional=False):
    return [_Tensor((*path, "kernel"), (f"{hf}.weight",), (n_out, n_in),
                    "linear", optional),
            _Tensor((*path, "bias"), (f"{hf}.bias",), (n_out,), "copy",
                    optional)]

  def norm(path, hf):
    return [_Tensor((*path, "scale"), (f"{hf}.weight",), (h,), "copy"),
            _Tensor((*path, "bias"), (f"{hf}.bias",), (h,), "copy")]

  def embed(name, rows):
    return _Tensor(("embeddings", name, "embedding"),
                   (f"embeddings.{name}.weight",), (rows, h), "copy")

  table = [embed("word_embeddings", cfg.vocab_size),
           embed("position_embeddings", cfg.max_position_embeddings),
           embed("token_type_embeddings", cfg.type_vocab_size),
           *norm(("embeddings", "layer_norm"), "embeddings.LayerNorm")]
  for i in range(cfg.num_layers):
    ours, hf = ("layers", str(i)), f"encoder.layer.{i}"
    qkv = tuple(f"{hf}.attention.self.{n}" for n in ("query", "key", "value"))
    table += [
        _Tensor((*ours, "attention", "qkv", "kernel"),
                tuple(f"{k}.weight" for k in qkv), (h, h), "qkv_kernel"),
        _Tensor((*ours, "attention", "qkv", "bias"),
                tuple(f"{k}.bias" for k in qkv), (h,), "qkv_bias"),
        *linear((*ours, "attention", "output"),
                f"{hf}.attention.output.dense", h, h),
        *norm((*ours, "attention", "layer_norm"),
              f"{hf}.attention.output.LayerNorm"),
        *linear((*ours, "intermediate"), f"{hf}.intermediate.dense", h, inter),
        *linear((*ours, "output"), f"{hf}.output.dense", inter, h),
        *norm((*ours, "output_layer_norm"), f"{hf}.output.LayerNorm"),
    ]
  table += linear(("pooler",), "pooler.dense", h, h, optional=True)
  return table


def _hf_prefix(cfg: Config) -> str:
  # What HF *ForSequenceClassification calls the encoder: "bert.", "roberta.".
  return f"{cfg.model_type}."


def _strip_prefix(key: str) -> str:
  for prefix in (f"{t}." for t in _POSITION_OFFSET_FROM_PAD):
    if key.startswith(prefix):
      return key[len(prefix):]
  return key


def _read_config(folder: Path) -> tuple[Path, Config]:
  path = folder / "config.json"
  d = read_hf_config(folder)
  try:
    return path, Config.from_hf(d)
  except ConfigError as e:
    raise ConfigError(f"{path}: {e}") from e


def from_hf(path: str, *, attention_impl: str | None = None
            ) -> tuple[Config, Model]:
  """Loads config.json + safetensors weights from an HF model folder.

  Args:
    path: folder with config.json and model.safetensors (or a sharded
      model.safetensors.index.json). Keys may carry a `bert.`/`roberta.`
      prefix; other tensors (task heads, position_ids) are ignored.
    attention_impl: stored in the returned Config (see Config).

  Returns:
    (cfg, model) with float32 params. A checkpoint without pooler weights
    gets a randomly initialised pooler (logged as a warning).

  Raises:
    CheckpointError: naming the file, key, expected and found shape, when a
      required tensor is missing or has the wrong shape.
  """
  folder = Path(path)
  cfg_path, cfg = _read_config(folder)
  cfg = dataclasses.replace(cfg, attention_impl=attention_impl)
  files = safetensors_io.safetensors_files(folder)
  tensors: dict[str, np.ndarray] = {}
  source: dict[str, Path] = {}
  for f in files:
    for k, v in safetensors_io.read_safetensors_file(f).items():
      name = _strip_prefix(k)
      tensors[name], source[name] = v, f
  where = files[0] if len(files) == 1 else files[0].parent
  used: set[str] = set()

  def fetch(key: str, shape: tuple[int, ...]) -> np.ndarray | None:
    for suffix, legacy in _LEGACY_SUFFIXES.items():
      if key not in tensors and key.endswith(suffix):
        key = key[:-len(suffix)] + legacy
    if key not in tensors:
      return None
    arr = tensors[key]
    if arr.shape != shape:
      raise CheckpointError(
          f"{source[key]}: tensor {key!r} has shape {tuple(arr.shape)},"
          f" expected {shape} from {cfg_path}")
    used.add(key)
    return np.asarray(arr, np.float32)

  values: dict[tuple[str, ...], np.ndarray] = {}
  missing_optional: list[str] = []
  random_paths: set[tuple[str, ...]] = set()
  for t in _hf_layout(cfg):
    found = [fetch(k, t.hf_shape) for k in t.hf_keys]
    absent = [k for k, a in zip(t.hf_keys, found) if a is None]
    if absent and t.optional:
      missing_optional += absent
      random_paths.add(t.path)
      continue
    if absent:
      raise CheckpointError(
          f"{where}: missing tensor {absent[0]!r} (expected shape"
          f" {t.hf_shape}, found none; keys may carry a"
          f" {_hf_prefix(cfg)!r} prefix)")
    values[t.path] = _CONVERT[t.kind][0](found)

  unused = sorted(set(tensors) - used - set(_IGNORED_KEYS))
  if unused:
    log.info("%s: ignoring %d tensors not part of the encoder, e.g. %s",
             where, len(unused), unused[:5])
  if missing_optional:
    log.warning("%s: no pooler weights (%s); the pooler is randomly"
                " initialised", where, ", ".join(missing_optional))

  return cfg, _build(cfg, values, seed=0,
                     may_be_random=lambda path: path in random_paths)


# HF stores Linear weights [out, in] (PEFT's fan_in_fan_out=False).
HF_WEIGHT_IN_FIRST = False


def hf_linear_names(cfg: Config, *, prefixed: bool = True) -> dict[str, tuple[str, ...]]:
  """Dotted path of each Linear ("layers.0.attention.qkv") -> its HF module names: three
  for the fused q/k/v. `prefixed`: as in *ForSequenceClassification ("bert.encoder...");
  otherwise as in the bare BertModel ("encoder...")."""
  prefix = _hf_prefix(cfg) if prefixed else ""
  return {".".join(t.path[:-1]): tuple(prefix + k[:-len(".weight")] for k in t.hf_keys)
          for t in _hf_layout(cfg) if t.path[-1] == "kernel"}


def to_hf_state_dict(cfg: Config, model_state: Model | nnx.State | Mapping
                     ) -> dict[str, np.ndarray]:
  """Exports params as an HF state dict (float32, HF layout).

  Keys are HF BertModel/RobertaModel names prefixed with `bert.` (or
  `roberta.`), what *ForSequenceClassification expects; q/k/v are unfused
  and Linear weights transposed back to [out, in].

  Args:
    cfg: the model's Config.
    model_state: the Model, its nnx.State (`nnx.state(model)`, the params
      half of `nnx.split`, a restored checkpoint) or `nnx.to_pure_dict(state)`.
  """
  flat = flat_params(model_state)
  prefix = _hf_prefix(cfg)
  out: dict[str, np.ndarray] = {}
  for t in _hf_layout(cfg):
    arrays = _CONVERT[t.kind][1](flat[t.path])
    for k, a in zip(t.hf_keys, arrays):
      out[prefix + k] = np.ascontiguousarray(a, dtype=np.float32)
  return out
