"""What every decoder family runs (every decoder family uses it): the layer stack, unrolled
or scanned and with remat, the call contract of a decoder Model (`DecoderLM`), and
the features it ends with.

The KV cache is fjft.models.layers.kv_cache, attention fjft.models.layers.attention,
the HF tensor mapping fjft.weights.hf_tensors (one engine for every family).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from fjft.models.layers import kv_cache
from fjft.models.layers.dropout import dropout, fold
from fjft.models.layers.kv_cache import Cache
from fjft.models.layers.matmul import matmul


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


class PreNormBlock(nnx.Module):
  """A decoder layer: x + attention(norm(x)), then x + mlp(norm(x)), dropout on each
  branch, as every decoder family has it.

  A family subclasses it with its part classes, named as its HF checkpoint names them
  (param paths follow attribute names). They are called as attention(cfg, x, extra,
  mask, kv, layer, cache_index, key, dtype) -> (y, kv) and mlp(cfg, x, dtype, key) -> y.
  """

  PARTS: tuple[str, str, str, str]  # names of (attention norm, attention, mlp norm, mlp)
  NORM: type                        # NORM(dim, eps, stack=, rngs=)
  EPS: str                          # the Config field of the norms' epsilon
  ATTENTION: type                   # ATTENTION(cfg, stack=, rngs=), likewise FEED_FORWARD
  FEED_FORWARD: type

  def __init__(self, cfg, *, stack: int | None = None, rngs: nnx.Rngs):
    def norm():
      return self.NORM(cfg.hidden_size, getattr(cfg, self.EPS), stack=stack, rngs=rngs)
    parts = (norm(), self.ATTENTION(cfg, stack=stack, rngs=rngs), norm(),
             self.FEED_FORWARD(cfg, stack=stack, rngs=rngs))
    for name, part in zip(self.PARTS, parts):
      setattr(self, name, part)

  def __call__(self, cfg, x, extra, mask, kv, layer, cache_index, key, dtype):
    norm1, attention, norm2, mlp = (getattr(self, name) for name in self.PARTS)
    y, kv = attention(cfg, norm1(x, dtype), extra, mask, kv, layer, cache_index,
                      fold(key, 0), dtype)
    x = x + dropout(y, cfg.hidden_dropout, fold(key, 1))
    y = mlp(cfg, norm2(x, dtype), dtype, fold(key, 3))
    return x + dropout(y, cfg.hidden_dropout, fold(key, 2)), kv


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
  or None. A loss over a large vocabulary projects in chunks from here instead of
  holding all [B, T, vocab] logits.
  """
  hidden: jax.Array
  head: jax.Array
  cache: Cache | None
  compute_dtype: Any
  # cap * tanh(logits / cap) on the logits (Gemma 2's final soft-capping), or None.
  logit_softcap: float | None = None

  def logits(self) -> jax.Array:
    return project(self.hidden, self.head, self.compute_dtype, self.logit_softcap)


def project(x: jax.Array, head: jax.Array, dtype: Any, softcap: float | None = None
            ) -> jax.Array:
  """float32 logits x @ head, soft-capped when `softcap` is set."""
  logits = matmul(x, head, dtype, out_dtype=jnp.float32).astype(jnp.float32)
  return logits if softcap is None else jnp.tanh(logits / softcap) * softcap


class DecoderLM(nnx.Module):
  """The call contract of every decoder family's Model (llama, gpt2, gemma, phi3, llama_variants).

  A subclass sets `cfg` and `layers` (make_layers) and defines `embed` and
  `finish`; its blocks are called as block(cfg, x, extra, mask, kv, layer,
  cache_index, key, dtype), `extra` being what `embed` returns besides x.
  """

  def embed(self, input_ids: jax.Array, positions: jax.Array, dropout_key: jax.Array | None,
            dtype: jnp.dtype) -> tuple[jax.Array, Any]:
    """(x [B, T, H] in `dtype`, what every block takes besides: RoPE angles, or None)."""
    raise NotImplementedError

  def finish(self, x: jax.Array, dtype: jnp.dtype) -> tuple[jax.Array, jax.Array]:
    """(the final-normed x, the [H, vocab] head)."""
    raise NotImplementedError

  def sliding_window(self) -> int | None:
    return None

  def embed_with_cache(self, input_ids: jax.Array, positions: jax.Array,
                       cache: Cache | None, dropout_key: jax.Array | None,
                       dtype: jnp.dtype) -> tuple[jax.Array, Any]:
    """`embed`, for a family whose embedding also depends on the KV cache (Phi-3's
    longrope picks its RoPE factors by the cache's length); others keep `embed`."""
    return self.embed(input_ids, positions, dropout_key, dtype)

  def __call__(self, input_ids: jax.Array, positions: jax.Array, **kwargs
               ) -> tuple[jax.Array, Cache | None]:
    """(float32 logits [B, T, vocab], the new Cache or None); the arguments
    are those of `features`."""
    f = self.features(input_ids, positions, **kwargs)
    return f.logits(), f.cache

  def features(self, input_ids: jax.Array, positions: jax.Array, *,
               kv_mask: jax.Array | None = None, cache: Cache | None = None,
               cache_index: jax.Array | None = None,
               dropout_key: jax.Array | None = None,
               compute_dtype: jnp.dtype = jnp.float32,
               segment_ids: jax.Array | None = None,
               ) -> Features:
    """Runs the decoder on T new tokens.

    Args:
      input_ids: int32 [B, T].
      positions: int32 [B, T], the tokens' positions (0 at a row's first real
        token, so left padding does not shift them): RoPE angles (llama) or
        rows of the position table (gpt2, clamped below max_position_embeddings:
        traced values cannot be reported).
      kv_mask: bool [B, S], False for padding keys; S == T without a cache,
        max_len with one. None: every key is real.
      cache: from init_cache; the new tokens' k/v are written at slots
        cache_index .. cache_index + T - 1.
      cache_index: int32 scalar, slot of input_ids[:, 0] (default 0).
      dropout_key: a PRNG key enables dropout; None disables it.
      compute_dtype: matmul/activation dtype; norms, RoPE and softmax stay
        float32, params are not cast.
      segment_ids: int32 [B, T] for packed rows (no cache): a token attends
        only to tokens of its own segment; pass positions restarting at 0 per
        segment.

    Returns:
      Features (final hidden states, vocabulary head, updated Cache or
      None). Query t attends to slots s <= cache_index + t (within
      sliding_window) whose kv_mask is True, and always to its own slot.
    """
    cfg = self.cfg
    mask, kv, cache_index = kv_cache.slots_and_cache(
        cfg.num_layers, input_ids.shape[1], cache, cache_index, kv_mask,
        self.sliding_window(), segment_ids)
    x, extra = self.embed_with_cache(input_ids, positions, cache, dropout_key, compute_dtype)

    def call(layer, x, kv, i):
      return layer(cfg, x, extra, mask, kv, i, cache_index, fold(dropout_key, i),
                   compute_dtype)

    x, kv = run_layers(self.layers, cfg.num_layers, cfg.scan_layers, cfg.remat, x, kv,
                       call)
    x, head = self.finish(x, compute_dtype)
    return Features(x, head, None if kv is None else Cache(*kv), compute_dtype)
