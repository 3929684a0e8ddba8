"""Pretrained decoder LMs ready to generate: the `LM` bundle the decoding code takes.

`load_lm` is fjft.models.registry.load for a decoder, split into the graph and the params
that generation and the LM task take.
"""

from __future__ import annotations

import dataclasses
import importlib
from types import ModuleType
from typing import Any

from flax import nnx

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


def load_lm(name_or_path: str, *, adapter: str | None = None, mesh=None, rules=None,
            **runtime) -> LM:
  """A pretrained decoder (registry.load(name_or_path, ...) refusing encoders) as an LM;
  `runtime` options (scan_layers, remat, attention_impl) go to the model config,
  `adapter` (a PEFT LoRA folder) is merged into the weights, and with `mesh` and
  `rules` each param is created directly in its shards."""
  loaded = registry.load(registry.resolve(name_or_path, expect="decoder"), adapter=adapter,
                         mesh=mesh, rules=rules, **runtime)
  graphdef, params = nnx.split(loaded.model)
  return LM(loaded.family, loaded.cfg, graphdef, params, loaded.tokenizer, loaded.source)
