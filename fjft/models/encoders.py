"""A pretrained encoder as the encoder tasks fine-tune it: config.model's dropout and
attention, config.peft's adapters; and the same encoder rebuilt from a run's model.json
(shapes only, no pretrained weights read) to restore its checkpoint into."""

from __future__ import annotations

import dataclasses
from types import ModuleType
from typing import Any

import jax.numpy as jnp
from flax import nnx

from fjft.models import adapters, registry
from fjft.models.tokenizer import Tokenizer


@dataclasses.dataclass
class Encoder:
  family: ModuleType
  path: str               # the local HF folder the weights came from
  cfg: Any                # the family's Config, with the run's dropout
  module: nnx.Module      # the pretrained encoder with config.peft's adapters
  tokenizer: Tokenizer

  @property
  def model_type(self) -> str:
    return self.cfg.to_hf()["model_type"]


def load(config, mesh=None) -> Encoder:
  """config.model.name's pretrained encoder, ready to train under `config`; on a `mesh`,
  each weight goes from the file straight to its shard (config.sharding_rules)."""
  m = config.model
  loaded = registry.load(registry.resolve(m.name, expect="encoder"), mesh=mesh,
                         rules=config.sharding_rules if mesh is not None else None,
                         hidden_dropout=m.hidden_dropout, attention_dropout=m.attention_dropout,
                         attention_impl=m.attention_impl or None)
  adapters.apply(loaded.model, adapters.structure(config), config.seed)
  return Encoder(loaded.family, loaded.source, loaded.cfg, loaded.model, loaded.tokenizer)


def skeleton(info: dict) -> tuple[nnx.Module, Any]:
  """(the encoder a run's model.json describes, with its adapters; its Config)."""
  family = registry.family_module(info["family"])
  cfg = family.Config.from_hf(info["hf_config"])
  module = family.Model(cfg, rngs=nnx.Rngs(0))
  adapters.apply(module, info.get("peft_structure"))
  return module, cfg


def make_apply_fn(graphdef, compute_dtype: str):
  """(params, batch, dropout_key) -> the model's output on batch's input_ids and
  attention_mask (dropout on when a key is given)."""
  dtype = jnp.dtype(compute_dtype)

  def apply_fn(params, batch, dropout_key=None):
    model = nnx.merge(graphdef, params)
    return model(batch["input_ids"], batch["attention_mask"], dropout_key=dropout_key,
                 compute_dtype=dtype)

  return apply_fn
