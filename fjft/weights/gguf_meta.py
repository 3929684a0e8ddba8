"""GGUF metadata lookups whose failures name the file and the key, for the reader and
the families' GGUF layouts (fjft.models.family.GGUFLayout)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fjft.errors import CheckpointError


class Meta:
  """Metadata lookups whose failures name the file and the key."""

  def __init__(self, path: Path, values: dict[str, Any]):
    self.path, self.values = path, values

  @property
  def arch(self) -> str:
    """general.architecture: the prefix of the model's own keys."""
    return self.need("general.architecture")

  def get(self, key: str, default: Any = None) -> Any:
    return self.values.get(key, default)

  def need(self, key: str) -> Any:
    if key not in self.values:
      raise CheckpointError(f"{self.path}: GGUF metadata lacks {key!r}")
    return self.values[key]

  def scalar(self, key: str, default: Any = None) -> Any:
    """A value that must be one number (some files give per-layer arrays)."""
    v = self.need(key) if default is None else self.values.get(key, default)
    if isinstance(v, list):
      if not v or any(x != v[0] for x in v):
        raise CheckpointError(f"{self.path}: GGUF metadata {key!r} varies per layer"
                              f" ({v[:8]}...), which fjft does not support")
      v = v[0]
    return v


def f32(v: Any) -> float:
  """A float32 metadata value as the shortest decimal that rounds to it.

  GGUF stores 1e-5 as float32 9.99999974e-06; configs read better (and match
  the original config.json) with the decimal the model was made with.
  """
  return float(str(np.float32(v)))
