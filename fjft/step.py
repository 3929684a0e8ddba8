"""The train and eval steps: pure functions, jit-compiled with donated, sharded state."""

from __future__ import annotations

from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any


def make_train_step(apply_fn: Callable, loss_fn: Callable, optimizer: optax.GradientTransformation,
                    grad_accum: int, base_key: jax.Array, trainable=None):
  """Returns train_step(state, batch) -> (state, metrics).

  apply_fn(params, batch, dropout_key) -> model output; loss_fn(output, batch) ->
  (summed loss, summed weight). The loss is normalised by the weight of the whole batch,
  so `grad_accum` micro-batches give the same update as one large batch.

  `trainable` (a tree of bools like params, fjft.optim.trainable_mask) freezes the False
  leaves: no gradient flows to them (XLA drops those weight-gradient products) and they
  leave the step as they came in, so with donated state they are not even copied.
  """

  def summed_loss(params, micro, key):
    if trainable is not None:
      params = jax.tree.map(lambda p, t: p if t else jax.lax.stop_gradient(p), params, trainable)
    out = apply_fn(params, micro, key)
    return loss_fn(out, micro)

  grad_fn = jax.value_and_grad(summed_loss, has_aux=True)

  def train_step(state: TrainState, batch: dict):
    key = jax.random.fold_in(base_key, state.step)
    if grad_accum == 1:
      (loss, weight), grads = grad_fn(state.params, batch, jax.random.fold_in(key, 0))
    else:
      micro = jax.tree.map(lambda x: x.reshape((grad_accum, -1) + x.shape[1:]), batch)

      def accumulate(carry, inputs):
        grads, loss, weight = carry
        i, mb = inputs
        (l, w), g = grad_fn(state.params, mb, jax.random.fold_in(key, i))
        return (jax.tree.map(jnp.add, grads, g), loss + l, weight + w), None

      zeros = jax.tree.map(jnp.zeros_like, state.params)
      (grads, loss, weight), _ = jax.lax.scan(
          accumulate, (zeros, 0.0, 0.0), (jnp.arange(grad_accum), micro))
    weight = jnp.maximum(weight, 1.0)
    grads = jax.tree.map(lambda g: g / weight, grads)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    if trainable is None:
      params = optax.apply_updates(state.params, updates)
    else:
      params = jax.tree.map(lambda p, u, t: (p + u).astype(p.dtype) if t else p,
                            state.params, updates, trainable)
    metrics = {"loss": loss / weight, "grad_norm": optax.tree.norm(grads)}
    return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics

  return train_step


def make_eval_step(apply_fn: Callable, predict_fn: Callable):
  """Returns eval_step(params, batch) -> per-example outputs (no dropout)."""

  def eval_step(params, batch):
    return predict_fn(apply_fn(params, batch, None), batch)

  return eval_step
