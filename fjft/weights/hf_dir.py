"""Write a Hugging Face model directory: config.json and model.safetensors (float32)."""

from __future__ import annotations

import json
import os

import numpy as np

from fjft.weights.safetensors_io import write_safetensors


def write_hf_dir(out_dir: str, hf_config: dict, tensors: dict) -> None:
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "config.json"), "w") as f:
    json.dump(hf_config, f, indent=2)
  write_safetensors({k: np.ascontiguousarray(np.asarray(v, np.float32)) for k, v in tensors.items()},
                    os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
