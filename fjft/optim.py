"""The optimizer: AdamW with warm-up and decay, clipping, no decay on biases and norms.

Parameters are named by their dotted paths ("encoder.layers.0.attention.qkv.kernel").
`optim.freeze` (a regex, re.search) freezes the parameters it matches: they get no gradient,
no optimizer state and no update. `optim.lr_groups` ("<regex>=<factor>;..." , first match
wins) scales the learning rate of the parameters a regex matches, e.g. "^classifier\\.=10"
trains a new head at 10x.
"""

from __future__ import annotations

import re

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


def param_paths(params):
  """The tree of `params` with each leaf replaced by its dotted path."""
  def name(k):
    for attr in ("key", "name", "idx"):
      if hasattr(k, attr):
        return str(getattr(k, attr))
    return str(k)
  return jax.tree_util.tree_map_with_path(lambda path, _: ".".join(name(k) for k in path), params)


def _compile(pattern: str, field: str) -> re.Pattern:
  try:
    return re.compile(pattern)
  except re.error as e:
    raise ConfigError(f"config field {field}: {pattern!r} is not a regular expression ({e})") from None


def trainable_mask(params, freeze: str):
  """Tree of bools: False where optim.freeze matches the parameter's path."""
  if not freeze:
    return jax.tree.map(lambda _: True, params)
  rx = _compile(freeze, "optim.freeze")
  mask = jax.tree.map(lambda path: not rx.search(path), param_paths(params))
  if not any(jax.tree.leaves(mask)):
    raise ConfigError(f"config field optim.freeze={freeze!r} freezes every parameter: nothing "
                      "would train")
  return mask


def lr_factors(params, lr_groups: str):
  """Tree of learning-rate factors from optim.lr_groups ("<regex>=<factor>;...")."""
  groups = []
  for item in (x.strip() for x in lr_groups.split(";")):
    if not item:
      continue
    pattern, eq, factor = item.rpartition("=")
    try:
      value = float(factor)
    except ValueError:
      value = -1.0
    if not eq or not pattern or value <= 0:
      raise ConfigError(f"config field optim.lr_groups: {item!r} is not <regex>=<factor> with a "
                        "factor > 0 (groups are separated by ';')")
    groups.append((_compile(pattern, "optim.lr_groups"), value))
  paths = param_paths(params)
  for rx, _ in groups:
    if not any(rx.search(p) for p in jax.tree.leaves(paths)):
      raise ConfigError(f"config field optim.lr_groups: {rx.pattern!r} matches no parameter "
                        f"(paths look like {jax.tree.leaves(paths)[0]!r})")
  return jax.tree.map(lambda p: next((f for rx, f in groups if rx.search(p)), 1.0), paths)


def make_optimizer(optim_cfg, total_steps: int, params=None) -> optax.GradientTransformation:
  """AdamW (+ clipping); given `params`, with optim.freeze and optim.lr_groups applied."""
  def adamw(factor: float):
    base = schedule(optim_cfg, total_steps)
    lr = base if factor == 1.0 else (lambda step: factor * base(step))
    return optax.adamw(lr, b1=optim_cfg.b1, b2=optim_cfg.b2, eps=optim_cfg.eps,
                       weight_decay=optim_cfg.weight_decay, mask=decay_mask)

  clip = (optax.clip_by_global_norm(optim_cfg.clip_norm) if optim_cfg.clip_norm > 0
          else optax.identity())
  freeze, groups = optim_cfg.get("freeze", ""), optim_cfg.get("lr_groups", "")
  if params is None or not (freeze or groups):
    return optax.chain(clip, adamw(1.0))
  trainable = trainable_mask(params, freeze)
  factors = lr_factors(params, groups)
  labels = jax.tree.map(lambda t, f: f"x{f}" if t else "frozen", trainable, factors)
  transforms = {f"x{f}": adamw(f) for f in set(jax.tree.leaves(factors))}
  transforms["frozen"] = optax.set_to_zero()   # no state for frozen parameters
  return optax.chain(clip, optax.multi_transform(transforms, labels))
