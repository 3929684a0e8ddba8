"""The optimizer: AdamW with warm-up and decay, clipping, no decay on biases and norms."""

from __future__ import annotations

import jax
import optax

from fjft.errors import ConfigError


def schedule(optim_cfg, total_steps: int) -> optax.Schedule:
  warmup = int(round(optim_cfg.warmup_fraction * total_steps))
  lr = optim_cfg.lr
  kind = optim_cfg.schedule
  decay_steps = max(total_steps - warmup, 1)
  if kind == "linear":
    decay = optax.linear_schedule(lr, 0.0, decay_steps)
  elif kind == "cosine":
    decay = optax.cosine_decay_schedule(lr, decay_steps)
  elif kind == "constant":
    decay = optax.constant_schedule(lr)
  else:
    raise ConfigError(f"config field optim.schedule must be linear, cosine or constant (got {kind!r})")
  if warmup == 0:
    return decay
  return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), decay], [warmup])


def decay_mask(params):
  """Weight decay only on matrices: biases, norm scales and 1-d params are left alone."""
  return jax.tree.map(lambda p: p.ndim >= 2, params)


def make_optimizer(optim_cfg, total_steps: int) -> optax.GradientTransformation:
  return optax.chain(
      optax.clip_by_global_norm(optim_cfg.clip_norm) if optim_cfg.clip_norm > 0 else optax.identity(),
      optax.adamw(schedule(optim_cfg, total_steps), b1=optim_cfg.b1, b2=optim_cfg.b2,
                  eps=optim_cfg.eps, weight_decay=optim_cfg.weight_decay, mask=decay_mask),
  )
