"""AdamW with its moments kept in bfloat16 between steps (optim.state_dtype="bfloat16").

AdamW's two moments are as large as the params each: in float32 they are two thirds of a
full fine-tune's resident state (params, moments; the gradients live within the step). In
bfloat16 they take half that. Written here rather than taken from optax because (1) optax's
`mu_dtype` stores only the first moment so, and the second, an average over ~1/(1 - b2) =
1000 steps, moves by about 0.1% a step, below bfloat16's resolution (0.4%): round-to-nearest
freezes it, so each moment is rounded stochastically (up with the probability of the
distance to the lower neighbour: unbiased, the averages keep moving in expectation); and
(2) optax's chain (clipping, Adam, weight decay, learning rate) hands whole trees from one
transformation to the next, which XLA keeps as float32 temporaries as large as the params,
several times over. Here each param's clipping, moments, rounding and update are one
elementwise function, fused by XLA into one pass, and the rounding's random bits are a hash
of the element's index and the step (no random-bits buffer). The update is computed in
float32; with the same inputs it is optax.adamw's (with clip_by_global_norm before it).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax


class AdamWState(NamedTuple):
  count: jax.Array     # steps taken (int32)
  mu: Any              # first moments, bfloat16, like the params
  nu: Any              # second moments, bfloat16


def _hash_bits(shape, count: jax.Array, leaf: int) -> jax.Array:
  """Pseudo-random uint32 per element from (index, step, leaf): murmur3's finaliser over
  a counter, computed in place (XLA fuses it into the elementwise pass)."""
  n = 1
  for d in shape:
    n *= d
  idx = jax.lax.iota(jnp.uint32, n).reshape(shape)
  h = (idx * jnp.uint32(0x9E3779B1)) ^ (count.astype(jnp.uint32) * jnp.uint32(0x85EBCA77)
                                         + jnp.uint32((leaf * 0xC2B2AE3D) & 0xFFFFFFFF))
  h = h ^ (h >> 16)
  h = h * jnp.uint32(0x85EBCA6B)
  h = h ^ (h >> 13)
  h = h * jnp.uint32(0xC2B2AE35)
  return h ^ (h >> 16)


def stochastic_round(x: jax.Array, bits: jax.Array) -> jax.Array:
  """float32 -> bfloat16, rounding up or down at random (`bits`: uniform uint32, one per
  element), unbiased: E[result] == x. inf and nan pass through."""
  raw = jax.lax.bitcast_convert_type(x.astype(jnp.float32), jnp.uint32)
  # adding below the kept 16 bits carries into them with the dropped part's probability
  rounded = (raw + (bits & jnp.uint32(0xFFFF))) & jnp.uint32(0xFFFF0000)
  out = jax.lax.bitcast_convert_type(rounded, jnp.float32)
  return jnp.where(jnp.isfinite(x), out, x).astype(jnp.bfloat16)


def adamw_bfloat16(lr: optax.Schedule, *, b1: float, b2: float, eps: float,
                   weight_decay: float, decay_mask: Callable, clip_norm: float,
                   lr_factors: Callable | None = None) -> optax.GradientTransformation:
  """optax.chain(clip_by_global_norm(clip_norm), adamw(lr, ..., mask=decay_mask)) with
  the moments stored in bfloat16. `decay_mask(params)` and `lr_factors(params)` give a
  Python bool / float per param (static); clip_norm 0 is no clipping."""

  def init(params):
    zeros = lambda p: jnp.zeros(p.shape, jnp.bfloat16)
    return AdamWState(jnp.zeros((), jnp.int32), jax.tree.map(zeros, params),
                      jax.tree.map(zeros, params))

  def update(grads, state, params, grad_scale=1.0):
    """`grad_scale` multiplies the gradients first (the train step's 1 / batch weight)."""
    scale = jnp.asarray(grad_scale, jnp.float32)
    if clip_norm > 0:   # as optax.clip_by_global_norm
      norm = optax.tree.norm(grads) * scale
      scale = scale * jnp.where(norm < clip_norm, 1.0, clip_norm / norm)
    step_lr = lr(state.count)
    count = state.count + 1
    bc1 = 1.0 - b1 ** count.astype(jnp.float32)
    bc2 = 1.0 - b2 ** count.astype(jnp.float32)
    decays = jax.tree.leaves(decay_mask(params))
    factors = jax.tree.leaves(lr_factors(params)) if lr_factors else [1.0] * len(decays)
    g_leaves, treedef = jax.tree.flatten(grads)

    def one(i, g, m, v, p):
      g = g.astype(jnp.float32) * scale
      m = b1 * m.astype(jnp.float32) + (1.0 - b1) * g
      v = b2 * v.astype(jnp.float32) + (1.0 - b2) * g * g
      u = (m / bc1) / (jnp.sqrt(v / bc2) + eps)
      if decays[i] and weight_decay:
        u = u + weight_decay * p
      bits_m, bits_v = _hash_bits(g.shape, count, 2 * i), _hash_bits(g.shape, count, 2 * i + 1)
      return (-step_lr * factors[i] * u, stochastic_round(m, bits_m),
              stochastic_round(v, bits_v))

    out = [one(i, g, m, v, p) for i, (g, m, v, p) in enumerate(zip(
        g_leaves, jax.tree.leaves(state.mu), jax.tree.leaves(state.nu),
        jax.tree.leaves(params)))]
    unflat = lambda k: jax.tree.unflatten(treedef, [o[k] for o in out])
    return unflat(0), AdamWState(count, unflat(1), unflat(2))

  def apply(grads, state, params, grad_scale=1.0):
    """(new params, new state): the update added to each param in the same fused pass, so
    that no tree of updates is kept between the optimizer and the params."""
    updates, new = update(grads, state, params, grad_scale)
    return jax.tree.map(lambda p, u: (p + u).astype(p.dtype), params, updates), new

  return FusedTransformation(init, update, apply)


class FusedTransformation(NamedTuple):
  """An optax GradientTransformation (init, update) that can also apply itself:
  apply(grads, state, params, grad_scale) -> (params, state); fjft's train step uses it
  when present."""
  init: Callable
  update: Callable
  apply: Callable
