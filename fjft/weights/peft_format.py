"""LoRA adapters in the PEFT format: adapter_config.json + adapter_model.safetensors, which
peft.PeftModel.from_pretrained loads onto the transformers base model.

Keys are "base_model.model.<HF module>.lora_A.weight" [r, in] and ".lora_B.weight"
[out, r], and "base_model.model.<module>.weight" for a trained new module (a classifier
head, PEFT's modules_to_save). fjft's fused q/k/v (BERT) is one adapter with one A; it
is written as three adapters sharing that A, which is the same update.
"""

from __future__ import annotations

import json
import os
import re
from types import ModuleType

import numpy as np
from flax import nnx

from fjft.errors import CheckpointError, ConfigError
from fjft.models.layers import lora
from fjft.weights.safetensors_io import read_safetensors_file, write_safetensors

PREFIX = "base_model.model."
CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"


def _per_layer(path: str, a: np.ndarray, b: np.ndarray):
  """(unstacked path, A [in, r], B [r, *out]) of an adapter, one per layer when stacked."""
  if a.ndim == 2:
    yield path, a, b
    return
  rest = path[len("layers."):]
  for i in range(a.shape[0]):
    yield f"layers.{i}.{rest}", a[i], b[i]


def _split_b(b: np.ndarray, parts: int) -> list[np.ndarray]:
  """B [r, *out] as the lora_B.weight [out_j, r] of each of `parts` HF modules."""
  r = b.shape[0]
  if parts == 1:
    return [b.reshape(r, -1).T]
  return [b[:, j].reshape(r, -1).T for j in range(parts)]


def write_adapter(out_dir: str, model: nnx.Module, family: ModuleType,
                  names: dict[str, tuple[str, ...]], structure: dict, *, task_type: str,
                  base_model: str, extra: dict[str, np.ndarray] | None = None) -> str:
  """Writes the adapters of `model` (the pretrained part of a LoRA run, adapters unmerged)
  and the `extra` trained tensors (HF names, e.g. {"classifier.weight": ...})."""
  tensors, modules = {}, []
  for path, (a, b) in lora.adapters(model).items():
    for layer_path, a_i, b_i in _per_layer(path, np.asarray(a), np.asarray(b)):
      if layer_path not in names:
        raise CheckpointError(f"{layer_path}: no Hugging Face module is known for this layer")
      hf = names[layer_path]
      for name, b_j in zip(hf, _split_b(b_i, len(hf))):
        tensors[f"{PREFIX}{name}.lora_A.weight"] = np.ascontiguousarray(a_i.T, np.float32)
        tensors[f"{PREFIX}{name}.lora_B.weight"] = np.ascontiguousarray(b_j, np.float32)
        modules.append(name)
  extra = extra or {}
  for key, value in extra.items():
    tensors[PREFIX + key] = np.ascontiguousarray(value, np.float32)
  # the top-level modules (a head of two Linears, RoBERTa's / ELECTRA's classifier.dense and
  # classifier.out_proj, is the one module "classifier", as PEFT wraps it for SEQ_CLS)
  saved = sorted({k.split(".", 1)[0] for k in extra})
  config = {
      "peft_type": "LORA", "task_type": task_type, "base_model_name_or_path": base_model,
      "r": structure["rank"], "lora_alpha": structure["alpha"],
      "lora_dropout": structure["dropout"], "target_modules": _targets(modules, names),
      "fan_in_fan_out": family.HF_WEIGHT_IN_FIRST, "bias": "none",
      "modules_to_save": saved or None, "inference_mode": True, "init_lora_weights": True,
      "use_rslora": False, "use_dora": False, "rank_pattern": {}, "alpha_pattern": {},
  }
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, CONFIG_FILE), "w") as f:
    json.dump(config, f, indent=2)
  write_safetensors(tensors, os.path.join(out_dir, WEIGHTS_FILE), metadata={"format": "pt"})
  return out_dir


def _targets(modules: list[str], names: dict[str, tuple[str, ...]]) -> list[str] | str:
  """PEFT's target_modules: the leaf names ("q_proj") when the adapted modules are all the
  modules with those leaf names, else a regex of the exact names (PEFT full-matches it)."""
  leaves = sorted({m.rsplit(".", 1)[-1] for m in modules})
  every = {n for group in names.values() for n in group if n.rsplit(".", 1)[-1] in leaves}
  if every == set(modules):
    return leaves
  return target_of(sorted(modules))


def read_adapter(folder: str) -> tuple[dict, dict[str, np.ndarray]]:
  """(adapter_config, tensors) of a PEFT LoRA adapter folder, checked."""
  config_path = os.path.join(folder, CONFIG_FILE)
  weights_path = os.path.join(folder, WEIGHTS_FILE)
  for path in (config_path, weights_path):
    if not os.path.isfile(path):
      raise CheckpointError(f"{folder}: not a PEFT adapter folder (no {os.path.basename(path)})")
  with open(config_path) as f:
    try:
      config = json.load(f)
    except json.JSONDecodeError as e:
      raise CheckpointError(f"{config_path}: not valid JSON ({e})") from None
  if config.get("peft_type") != "LORA":
    raise CheckpointError(f"{config_path}: peft_type is {config.get('peft_type')!r}; fjft reads "
                          "LORA adapters")
  for flag in ("use_dora", "use_rslora"):
    if config.get(flag):
      raise CheckpointError(f"{config_path}: {flag} is set; fjft reads plain LoRA adapters")
  if config.get("rank_pattern") or config.get("alpha_pattern"):
    raise CheckpointError(f"{config_path}: per-module ranks (rank_pattern/alpha_pattern) are "
                          "not supported")
  return config, read_safetensors_file(weights_path)


def adapted_paths(tensors: dict, names: dict[str, tuple[str, ...]]) -> list[str]:
  """Our (unstacked) Linear paths that the adapter's lora_A tensors cover."""
  modules = {k[len(PREFIX):-len(".lora_A.weight")] for k in tensors
             if k.startswith(PREFIX) and k.endswith(".lora_A.weight")}
  return [p for p, hf in names.items() if any(n in modules for n in hf)]


def load_adapter(model: nnx.Module, names: dict[str, tuple[str, ...]], folder: str,
                 rank: int, alpha: float) -> dict[str, np.ndarray]:
  """Sets the adapters of `model` (added by fjft.models.lora.add_lora with this rank and
  alpha) from a PEFT adapter folder; returns its other tensors (modules_to_save), HF-named.
  Adapters the folder lacks keep their start (B = 0: no change)."""
  config, tensors = read_adapter(folder)
  where = os.path.join(folder, WEIGHTS_FILE)
  if config.get("r") != rank or float(config.get("lora_alpha", -1)) != float(alpha):
    raise ConfigError(f"{os.path.join(folder, CONFIG_FILE)}: r={config.get('r')}, "
                      f"lora_alpha={config.get('lora_alpha')}; this run has peft.rank={rank}, "
                      f"peft.alpha={alpha}: set them to the adapter's")
  used = set()

  def get(key, shape):
    if key not in tensors:
      return None
    value = np.asarray(tensors[key], np.float32)
    if value.shape != shape:
      raise CheckpointError(f"{where}: tensor {key!r} has shape {value.shape}, expected {shape}")
    used.add(key)
    return value

  for path, m in lora.linears(model):
    if m.lora_a is None:
      continue
    a_all, b_all = np.array(m.lora_a.get_value()), np.array(m.lora_b.get_value())
    stacked = a_all.ndim == 3
    for i, (layer_path, a, b) in enumerate(_per_layer(path, a_all, b_all)):
      hf = names[layer_path]
      a_s = [get(f"{PREFIX}{n}.lora_A.weight", (a.shape[1], a.shape[0])) for n in hf]
      b_s = [get(f"{PREFIX}{n}.lora_B.weight", (x.shape[0], b.shape[0]))
             for n, x in zip(hf, _split_b(b, len(hf)))]
      if all(x is None for x in a_s + b_s):
        continue
      if any(x is None for x in a_s + b_s):
        raise CheckpointError(f"{where}: {layer_path} has only some of its lora_A/lora_B "
                              f"tensors ({', '.join(hf)})")
      if any(not np.array_equal(a_s[0], x) for x in a_s[1:]):
        raise CheckpointError(f"{where}: {', '.join(hf)} have different lora_A; fjft's fused "
                              "layer holds one adapter for them all")
      new_a = a_s[0].T
      new_b = np.stack([x.T for x in b_s], axis=1).reshape(b.shape) if len(hf) > 1 \
          else b_s[0].T.reshape(b.shape)
      if stacked:
        a_all[i], b_all[i] = new_a, new_b
      else:
        a_all, b_all = new_a, new_b
    m.lora_a.set_value(a_all)
    m.lora_b.set_value(b_all)
  left = sorted(k for k in tensors if k not in used and ".lora_" in k)
  if left:
    raise CheckpointError(f"{where}: {len(left)} adapter tensors are for layers this model's "
                          f"peft.target does not wrap, e.g. {left[0]!r}")
  return {k[len(PREFIX):]: np.asarray(v) for k, v in tensors.items()
          if ".lora_" not in k and k.startswith(PREFIX)}


def target_of(paths: list[str]) -> str:
  """A regex matching exactly these module paths (fjft's peft.target, PEFT's
  target_modules)."""
  return "^(?:" + "|".join(re.escape(p) for p in paths) + ")$"
