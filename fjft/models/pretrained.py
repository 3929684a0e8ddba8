"""Pretrained decoder LMs: load one (registered name, GGUF file or HF folder), ready to run.

`load_lm(name_or_path)` accepts, in this order:
  1. a name registered in registry.PRETRAINED_LM (e.g. "smollm2-135m-instruct");
  2. a .gguf file (weights dequantised to float32; tokenizer and chat template from it);
  3. a local Hugging Face folder whose config.json model_type is a decoder family;
  4. a Hugging Face hub id "org/name" (downloaded where the hub is reachable).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from types import ModuleType
from typing import Any

from flax import nnx

from fjft.errors import FjftError
from fjft.models import registry
from fjft.models.tokenizer import Tokenizer


@dataclasses.dataclass
class LM:
  family: ModuleType       # fjft.models.llama or fjft.models.gpt2
  cfg: Any                 # the family's Config
  graphdef: Any
  params: Any              # nnx.State of float32 params
  tokenizer: Tokenizer
  source: str              # what it was loaded from

  @property
  def max_context(self) -> int:
    return self.cfg.max_position_embeddings

  @property
  def init_cache(self):
    """init_cache(batch, max_len) -> an empty KV cache of this model (hashable for jit)."""
    return _CacheInit(self.family.__name__, self.cfg)

  def stop_ids(self) -> list[int]:
    """Generation stops at the end-of-sequence token (<|im_end|> for chat models)."""
    return [] if self.tokenizer.eos_id is None else [self.tokenizer.eos_id]


@dataclasses.dataclass(frozen=True)
class _CacheInit:
  # Frozen, so hashable: jit takes it as a static argument (the configs are hashable).
  family: str
  cfg: Any

  def __call__(self, batch: int, max_len: int):
    return importlib.import_module(self.family).init_cache(self.cfg, batch, max_len)


def load_lm(name_or_path: str, *, adapter: str | None = None, **runtime) -> LM:
  """Loads a pretrained decoder; `runtime` options (scan_layers, remat, attention_impl)
  go to the model config and are not part of the checkpoint. `adapter`: a PEFT LoRA
  adapter folder, merged into the weights."""
  kind, path = registry.resolve_lm(name_or_path)
  if kind == "gguf":
    from fjft.weights import gguf_io
    g = gguf_io.read_gguf(path)
    family = registry.decoder_family(g.hf_config.get("model_type"), path)
    cfg, model = family.from_state_dict(g.hf_config, g.tensors, source=path, **runtime)
    try:
      tokenizer = Tokenizer.from_gguf(g.tokenizer_meta, g.chat_template)
    except FjftError as e:  # the tokenizer sees only metadata: name the file here
      raise type(e)(f"{path}: tokenizer: {e}") from None
  else:
    family = registry.decoder_family(registry.model_type_of(path), path)
    cfg, model = family.from_hf(path, **runtime)
    tokenizer = Tokenizer.from_dir(path)
  if adapter:
    from fjft.models import adapters
    adapters.with_peft_adapter(model, family.hf_linear_names(cfg), adapter)
  source = os.path.abspath(path) + (f" + {os.path.abspath(adapter)}" if adapter else "")
  graphdef, params = nnx.split(model)
  return LM(family, cfg, graphdef, params, tokenizer, source)



def load_run(run_dir: str, *, merge: bool = True) -> LM:
  """The best checkpoint of a fine-tuned decoder run (fjft.lm_runner), ready to run.

  Needs only the run directory: the architecture comes from its model.json, the
  tokenizer from its tokenizer/ folder, the weights from checkpoints/best. A LoRA run's
  adapters (and quantised base) are merged into plain float32 kernels unless `merge` is
  False (to export the adapters).
  """
  from fjft.models import adapters
  from fjft.models.layers import lora
  import json

  from fjft.training.checkpoint import abstract_like, restore_best_params
  from fjft.errors import CheckpointError
  path = os.path.join(run_dir, "model.json")
  if not os.path.isfile(path):
    raise CheckpointError(f"{run_dir}: not a run directory (no model.json)")
  with open(path) as f:
    info = json.load(f)
  if info.get("task") != "lm":
    raise FjftError(f"{run_dir}: a classification run, not a decoder run; use fjft.predict")
  family = importlib.import_module(info["family"])
  cfg = family.Config.from_hf(info["hf_config"], **info.get("runtime", {}))
  structure = info.get("peft_structure")
  graphdef, abstract = nnx.split(nnx.eval_shape(
      lambda: adapters.apply(family.Model(cfg, rngs=nnx.Rngs(0)), structure)))
  import jax
  target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), abstract)
  _, params = restore_best_params(run_dir, abstract_like(target))
  if merge and structure:
    graphdef, params = nnx.split(lora.merge(nnx.merge(graphdef, params)))
  tokenizer = Tokenizer.from_dir(os.path.join(run_dir, "tokenizer"))
  return LM(family, cfg, graphdef, params, tokenizer, os.path.abspath(run_dir))
