"""config.peft applied to a run's model: LoRA adapters, a quantised frozen base, and what
trains. The run's model.json keeps `peft_structure` so that predict, generate and export
rebuild the same parameter tree before restoring a checkpoint.
"""

from __future__ import annotations

from flax import nnx

from fjft.errors import ConfigError
from fjft.models.layers import lora

# The adapters' parameter paths (fjft.optim.param_paths).
ADAPTER_PATTERN = r"\.lora_[ab]$"


def enabled(config) -> bool:
  method = config.get("peft", {}).get("method", "")
  if method not in ("", "lora"):
    raise ConfigError(f"config field peft.method must be '' (full fine-tuning) or 'lora' "
                      f"(got {method!r})")
  return method == "lora"


def structure(config) -> dict | None:
  """What shapes the parameter tree (for model.json); None for full fine-tuning."""
  if not enabled(config):
    return None
  p = config.peft
  return {"method": "lora", "rank": int(p.rank), "alpha": float(p.alpha),
          "dropout": float(p.dropout), "target": p.target, "quantize": p.quantize}


def apply(model: nnx.Module, info: dict | None, seed: int = 0) -> nnx.Module:
  """Quantises the base and adds the adapters `info` (structure()) describes, in place, on
  the pretrained model (under a task head: its encoder), whose Linear paths
  ("layers.0.self_attn.q_proj") info["target"] is matched against."""
  if info is None:
    return model
  target = info["target"]
  if info["quantize"]:
    lora.quantize_base(model, info["quantize"], target)
  lora.add_lora(model, rank=info["rank"], alpha=info["alpha"], dropout=info["dropout"],
                target=target, seed=seed)
  return model


def trainable_regex(config, new: str = "") -> str:
  """The params a LoRA run trains: its adapters, the task's `new` params (a head) and
  peft.train_also; "" (everything) for full fine-tuning."""
  if not enabled(config):
    return ""
  return "|".join(x for x in (ADAPTER_PATTERN, new, config.peft.train_also) if x)


def describe_counts(counts: dict) -> str:
  total, trainable = counts["total"], counts["trainable"]
  if trainable == total:
    return f"{total / 1e6:.1f}M params"
  return f"{total / 1e6:.1f}M params, {trainable / 1e6:.2f}M trainable ({100 * trainable / total:.2f}%)"


def load_initial(model: nnx.Module, names: dict, config) -> dict:
  """Starts the adapters of `model` from the PEFT adapter folder peft.init_from (to go on
  training it); returns the folder's other tensors (a classifier head), HF-named."""
  from fjft.weights import peft_format
  folder = config.peft.init_from
  if not folder:
    return {}
  return peft_format.load_adapter(model, names, folder, int(config.peft.rank),
                                  float(config.peft.alpha))


def with_peft_adapter(model: nnx.Module, names: dict, folder: str) -> nnx.Module:
  """`model` with the PEFT adapter in `folder` merged in (to generate or predict with it)."""
  from fjft.weights import peft_format
  config, tensors = peft_format.read_adapter(folder)
  paths = peft_format.adapted_paths(tensors, names)
  if not paths:
    raise ConfigError(f"{folder}: its adapter names no layer of this model (is it for "
                      "another base model?)")
  rank, alpha = int(config["r"]), float(config["lora_alpha"])
  lora.add_lora(model, rank=rank, alpha=alpha, dropout=0.0,
                target=peft_format.target_of(paths), seed=0)
  peft_format.load_adapter(model, names, folder, rank, alpha)
  return lora.merge(model)
