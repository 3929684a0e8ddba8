"""The decoders' KV cache: keys and values of every layer at absolute slots, written
in place one layer at a time, and the mask and carry of one call with or without it."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from fjft.models.layers.attention import attention_mask


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
