"""Batched, jit-compiled text generation with a KV cache.

Prompts are left-padded to a common bucket length P, so that every row's next token lands
in the same cache slot: the prompt fills slots 0..P-1 in one prefill call, and decoding
step i writes slot P+i. Positions (for RoPE / learned positions) count real tokens only,
so a left-padded row starts at position 0 like an unpadded one. The whole decode loop is
one `jax.lax.while_loop`, compiled once per (batch, P, max_new_tokens) and stopped early
when every row has hit a stop token.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fjft.errors import DataError

# Prompt lengths are rounded up to a multiple of this: a handful of compiles per batch shape.
PROMPT_BUCKET = 32


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
  max_new_tokens: int = 128
  temperature: float = 0.0    # 0 = greedy
  top_k: int = 0              # 0 = no top-k cut
  top_p: float = 1.0          # 1 = no nucleus cut
  seed: int = 0


def sample_logits(logits: jax.Array, key: jax.Array, s: SamplingConfig) -> jax.Array:
  """Next token ids [B] from logits [B, V]: greedy, or temperature + top-k + top-p."""
  if s.temperature <= 0.0:
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
  logits = logits.astype(jnp.float32) / s.temperature
  neg = jnp.finfo(jnp.float32).min
  if s.top_k > 0:
    kth = jax.lax.top_k(logits, min(s.top_k, logits.shape[-1]))[0][:, -1:]
    logits = jnp.where(logits < kth, neg, logits)
  if s.top_p < 1.0:
    order = jnp.argsort(-logits, axis=-1)
    sorted_logits = jnp.take_along_axis(logits, order, axis=-1)
    probs = jax.nn.softmax(sorted_logits, axis=-1)
    # keep the smallest prefix whose mass reaches top_p (the first token always stays)
    before = jnp.cumsum(probs, axis=-1) - probs
    sorted_logits = jnp.where(before < s.top_p, sorted_logits, neg)
    logits = jnp.full_like(logits, neg).at[
        jnp.arange(logits.shape[0])[:, None], order].set(sorted_logits)
  return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


def left_pad(prompts: list[list[int]], pad_id: int, length: int) -> tuple[np.ndarray, np.ndarray]:
  ids = np.full((len(prompts), length), pad_id, np.int32)
  mask = np.zeros((len(prompts), length), bool)
  for i, p in enumerate(prompts):
    if p:
      ids[i, length - len(p):] = p
      mask[i, length - len(p):] = True
  return ids, mask


def bucket(n: int, multiple: int = PROMPT_BUCKET) -> int:
  return max(multiple, -(-n // multiple) * multiple)


@functools.partial(jax.jit, static_argnames=("graphdef", "init_cache", "sampling", "max_len"))
def _generate(graphdef, params, ids, mask, stop_ids, *, init_cache, sampling: SamplingConfig,
              max_len: int):
  model = nnx.merge(graphdef, params)
  b, p = ids.shape
  n_new = sampling.max_new_tokens
  cache = init_cache(b, max_len)
  kv_mask = jnp.zeros((b, max_len), bool).at[:, :p].set(mask)
  positions = jnp.maximum(jnp.cumsum(mask, axis=1) - 1, 0).astype(jnp.int32)
  logits, cache = model(ids, positions, kv_mask=kv_mask, cache=cache,
                        cache_index=jnp.zeros((), jnp.int32))
  key = jax.random.key(sampling.seed)
  first = sample_logits(logits[:, -1], jax.random.fold_in(key, 0), sampling)
  next_pos = jnp.sum(mask, axis=1).astype(jnp.int32)
  out = jnp.zeros((b, n_new), jnp.int32)

  def is_stop(tok):
    return jnp.any(tok[:, None] == stop_ids[None, :], axis=-1)

  def cond(state):
    i, _, _, _, _, done, _ = state
    return (i < n_new) & ~jnp.all(done)

  def body(state):
    i, tok, pos, cache, kv_mask, done, out = state
    out = out.at[:, i].set(jnp.where(done, -1, tok))
    done = done | is_stop(tok)
    slot = p + i
    kv_mask = kv_mask.at[:, slot].set(True)
    logits, cache = model(tok[:, None], pos[:, None], kv_mask=kv_mask, cache=cache,
                          cache_index=slot.astype(jnp.int32))
    nxt = sample_logits(logits[:, 0], jax.random.fold_in(key, i + 1), sampling)
    return i + 1, nxt, pos + 1, cache, kv_mask, done, out

  state = (jnp.zeros((), jnp.int32), first, next_pos, cache, kv_mask,
           jnp.zeros((b,), bool), out)
  i, tok, _, _, _, done, out = jax.lax.while_loop(cond, body, state)
  return out


def generate(graphdef, params, init_cache, prompts: list[list[int]], *, pad_id: int,
             stop_ids: list[int], sampling: SamplingConfig, max_context: int,
             where: list[str] | None = None) -> list[list[int]]:
  """Generated token ids per prompt (stop token included when hit, nothing after it).

  `init_cache(batch, max_len)` builds the model's empty KV cache. A prompt that leaves no
  room for max_new_tokens within `max_context` is a DataError naming its input line.
  """
  for i, p in enumerate(prompts):
    if not p:
      raise DataError(f"{where[i] if where else f'prompt {i + 1}'}: empty prompt")
    if len(p) + sampling.max_new_tokens > max_context:
      raise DataError(
          f"{where[i] if where else f'prompt {i + 1}'}: prompt of {len(p)} tokens plus "
          f"max_new_tokens={sampling.max_new_tokens} exceeds the model's context of "
          f"{max_context} tokens")
  length = min(bucket(max(len(p) for p in prompts)), max_context - sampling.max_new_tokens)
  ids, mask = left_pad(prompts, pad_id, length)
  max_len = length + sampling.max_new_tokens
  out = _generate(graphdef, params, jnp.asarray(ids), jnp.asarray(mask),
                  jnp.asarray(sorted(set(stop_ids)) or [-2], jnp.int32),
                  init_cache=init_cache, sampling=sampling, max_len=max_len)
  out = np.asarray(out)
  return [[int(t) for t in row if t >= 0] for row in out]
