"""The train and eval steps: pure functions, jit-compiled with donated, sharded state."""

from __future__ import annotations

from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax

from fjft.training import optim


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any


def make_train_step(apply_fn: Callable, loss_fn: Callable, optimizer: optax.GradientTransformation,
                    grad_accum: int, base_key: jax.Array, trainable=None):
  """Returns train_step(state, batch, frozen_inputs=None) -> (state, metrics).

  apply_fn(params, batch, dropout_key) -> model output; loss_fn(output, batch) ->
  (summed loss, summed weight). The loss is normalised by the weight of the whole batch,
  so `grad_accum` micro-batches give the same update as one large batch.

  `trainable` (a tree of bools like params, fjft.optim.trainable_mask) freezes the False
  leaves: gradients, optimizer state (state.opt_state is over the trained part, see
  fjft.optim.split_trainable) and updates cover the True leaves only. The frozen leaves
  leave the step as they came in, so with donated state they are not even copied.

  `frozen_inputs` (a tree of arrays, e.g. a frozen reference model's params) reach apply_fn
  as batch["frozen"], whole in every micro-batch: an input of the step that is neither
  trained nor split into micro-batches, and not copied into the compiled program.
  """

  def summed_loss(trained, frozen, micro, key):
    params = trained if frozen is None else optim.join_trainable(trained, frozen)
    out = apply_fn(params, micro, key)
    return loss_fn(out, micro)

  grad_fn = jax.value_and_grad(summed_loss, has_aux=True)

  def train_step(state: TrainState, batch: dict, frozen_inputs=None):
    key = jax.random.fold_in(base_key, state.step)
    trained, frozen = ((state.params, None) if trainable is None
                       else optim.split_trainable(state.params, trainable))
    with_inputs = (lambda b: b) if frozen_inputs is None else (
        lambda b: {**b, "frozen": frozen_inputs})
    if grad_accum == 1:
      (loss, weight), grads = grad_fn(trained, frozen, with_inputs(batch),
                                      jax.random.fold_in(key, 0))
    else:
      micro = jax.tree.map(lambda x: x.reshape((grad_accum, -1) + x.shape[1:]), batch)

      def accumulate(carry, inputs):
        grads, loss, weight = carry
        i, mb = inputs
        (l, w), g = grad_fn(trained, frozen, with_inputs(mb), jax.random.fold_in(key, i))
        return (jax.tree.map(jnp.add, grads, g), loss + l, weight + w), None

      zeros = jax.tree.map(jnp.zeros_like, trained)
      (grads, loss, weight), _ = jax.lax.scan(
          accumulate, (zeros, 0.0, 0.0), (jnp.arange(grad_accum), micro))
    weight = jnp.maximum(weight, 1.0)
    if hasattr(optimizer, "apply"):
      # fjft.training.low_precision: normalising, clipping, the moments and the params'
      # update in one pass per param, with no normalised copy of the gradients kept
      trained, opt_state = optimizer.apply(grads, state.opt_state, trained,
                                           grad_scale=1.0 / weight)
      grad_norm = optax.tree.norm(grads) / weight
    else:
      grads = jax.tree.map(lambda g: g / weight, grads)
      updates, opt_state = optimizer.update(grads, state.opt_state, trained)
      trained = optax.apply_updates(trained, updates)
      grad_norm = optax.tree.norm(grads)
    params = trained if frozen is None else optim.join_trainable(trained, frozen)
    metrics = {"loss": loss / weight, "grad_norm": grad_norm}
    return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics

  return train_step


def init_opt_state(optimizer: optax.GradientTransformation, params, trainable=None,
                   shardings=None):
  """The optimizer state of a fresh run: over the trained part of `params` only, laid out
  by `shardings` (a tree like the state; None lets XLA choose)."""
  trained = params if trainable is None else optim.split_trainable(params, trainable)[0]
  return jax.jit(optimizer.init, out_shardings=shardings)(trained)


def make_eval_step(apply_fn: Callable, predict_fn: Callable):
  """Returns eval_step(params, batch) -> per-example outputs (no dropout)."""

  def eval_step(params, batch):
    return predict_fn(apply_fn(params, batch, None), batch)

  return eval_step
