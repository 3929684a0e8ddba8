"""The optimizer: AdamW with warm-up and decay, clipping, no decay on biases and norms.

Parameters are named by their dotted paths ("encoder.layers.0.attention.qkv.kernel").
`optim.freeze` (a regex, re.search) freezes the parameters it matches: they get no gradient,
no optimizer state and no update. The train step splits the params into the trained part and
the frozen part (`split_trainable`); the optimizer sees only the trained part. `optim.lr_groups` ("<regex>=<factor>;..." , first match
wins) scales the learning rate of the parameters a regex matches, e.g. "^classifier\\.=10"
trains a new head at 10x.
"""

from __future__ import annotations

import re

import jax
import optax

from fjft.errors import ConfigError
from fjft.training import low_precision


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

  def dotted(path, _):
    # an nnx.Param holds its array in `.value`: a detail, not part of the name
    parts = [name(k) for k in path
             if not (isinstance(k, jax.tree_util.GetAttrKey) and k.name == "value")]
    return ".".join(parts)
  return jax.tree_util.tree_map_with_path(dotted, params)


def _compile(pattern: str, field: str) -> re.Pattern:
  try:
    return re.compile(pattern)
  except re.error as e:
    raise ConfigError(f"config field {field}: {pattern!r} is not a regular expression ({e})") from None


def trainable_mask(params, freeze: str = "", only: str = ""):
  """Tree of bools: False where optim.freeze matches the parameter's path, and, given
  `only` (a regex: LoRA's adapters and new head), False where `only` does not match."""
  rx = _compile(freeze, "optim.freeze") if freeze else None
  keep = re.compile(only) if only else None
  mask = jax.tree.map(lambda path: not (rx and rx.search(path)) and
                      not (keep and not keep.search(path)), param_paths(params))
  if not any(jax.tree.leaves(mask)):
    raise ConfigError(f"config field optim.freeze={freeze!r} freezes every parameter: nothing "
                      "would train")
  return mask


def split_trainable(params, mask):
  """(trained, frozen): two trees shaped like `params`, each None where the other holds
  the leaf. Gradients, optimizer state and updates are taken over `trained` alone, so a
  frozen leaf may be any dtype (an int8 base weight) and costs no optimizer memory."""
  trained = jax.tree.map(lambda p, t: p if t else None, params, mask)
  frozen = jax.tree.map(lambda p, t: None if t else p, params, mask)
  return trained, frozen


def join_trainable(trained, frozen):
  """The inverse of split_trainable."""
  return jax.tree.map(lambda a, b: b if a is None else a, trained, frozen,
                      is_leaf=lambda x: x is None)


def like_params(state, params, values, other):
  """A tree shaped like the optimizer `state`: a leaf that tracks a param (AdamW's moments:
  its key path ends with the param's path, and the shapes agree) gets that param's entry
  of `values` (a tree like `params`); any other leaf (a step count) gets other(leaf).

  Matching by path holds through optax's chains, masks and multi_transform, whose states
  nest the params' tree under their own keys.
  """
  by_path = {}
  for (path, p), v in zip(jax.tree_util.tree_flatten_with_path(params)[0], jax.tree.leaves(values)):
    by_path[tuple(path)] = (p.shape, v)

  def pick(path, leaf):
    for start in range(len(path)):
      hit = by_path.get(tuple(path[start:]))
      if hit is not None and hit[0] == leaf.shape:
        return hit[1]
    return other(leaf)

  return jax.tree_util.tree_map_with_path(pick, state)


def count(params, mask=None) -> int:
  """Number of parameters (numbers, not arrays), or of the trainable ones given `mask`."""
  leaves = jax.tree.leaves(params)
  if mask is None:
    return int(sum(x.size for x in leaves))
  return int(sum(x.size for x, t in zip(leaves, jax.tree.leaves(mask)) if t))


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
  """AdamW (+ clipping) over the trained params (split_trainable's first part); given
  `params`, optim.lr_groups is applied to them; optim.state_dtype="bfloat16" keeps the
  moments in bfloat16 between steps."""
  def adamw(factor: float):
    base = schedule(optim_cfg, total_steps)
    lr = base if factor == 1.0 else (lambda step: factor * base(step))
    return optax.adamw(lr, b1=optim_cfg.b1, b2=optim_cfg.b2, eps=optim_cfg.eps,
                       weight_decay=optim_cfg.weight_decay, mask=decay_mask)

  clip = (optax.clip_by_global_norm(optim_cfg.clip_norm) if optim_cfg.clip_norm > 0
          else optax.identity())
  state_dtype = optim_cfg.get("state_dtype", "float32")
  if state_dtype not in ("float32", "bfloat16"):
    raise ConfigError(f"config field optim.state_dtype must be float32 or bfloat16 (got "
                      f"{state_dtype!r})")
  groups = optim_cfg.get("lr_groups", "")
  if state_dtype == "bfloat16":
    return low_precision.adamw_bfloat16(
        schedule(optim_cfg, total_steps), b1=optim_cfg.b1, b2=optim_cfg.b2, eps=optim_cfg.eps,
        weight_decay=optim_cfg.weight_decay, decay_mask=decay_mask,
        clip_norm=optim_cfg.clip_norm,
        lr_factors=(lambda p: lr_factors(p, groups)) if params is not None and groups else None)
  if params is None or not groups:
    return optax.chain(clip, adamw(1.0))
  factors = lr_factors(params, groups)
  labels = jax.tree.map(lambda f: f"x{f}", factors)
  transforms = {f"x{f}": adamw(f) for f in set(jax.tree.leaves(factors))}
  return optax.chain(clip, optax.multi_transform(transforms, labels))
