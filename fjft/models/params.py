"""Parameter trees as flat {path: numpy array} maps, for exporting any fjft model."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from flax import nnx


def _path_part(key: Any) -> str:
  # jax path entries: DictKey(.key), SequenceKey(.idx), GetAttrKey(.name).
  for attr in ("key", "idx", "name"):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def flat_params(tree: Any) -> dict[tuple[str, ...], np.ndarray]:
  """Path -> float32 numpy copy, for a Model, an nnx.State or a pure dict."""
  if isinstance(tree, nnx.Module):
    tree = nnx.state(tree, nnx.Param)
  leaves, _ = jax.tree_util.tree_flatten_with_path(
      tree, is_leaf=lambda x: isinstance(x, nnx.Variable))
  flat = {}
  for path, leaf in leaves:
    value = leaf.get_value() if isinstance(leaf, nnx.Variable) else leaf
    # A copy: arrays viewing jax buffers are read-only, exports should not be.
    flat[tuple(_path_part(k) for k in path)] = np.array(
        jax.device_get(value), np.float32)
  return flat
