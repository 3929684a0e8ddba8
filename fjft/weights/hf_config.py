"""The config.json of a Hugging Face model folder, read once for every model family."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fjft.errors import CheckpointError


def read_hf_config(folder: str | Path) -> dict[str, Any]:
  """The dict of <folder>/config.json; CheckpointError names what is wrong."""
  folder = Path(folder)
  path = folder / "config.json"
  if not path.is_file():
    raise CheckpointError(f"{folder}: no config.json (is this a Hugging Face"
                          " model folder?)")
  try:
    d = json.loads(path.read_text())
  except ValueError as e:
    raise CheckpointError(f"{path}: not valid JSON: {e}") from e
  if not isinstance(d, dict):
    raise CheckpointError(f"{path}: expected a JSON object")
  return d
