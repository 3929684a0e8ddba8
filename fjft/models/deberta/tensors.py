"""How a DeBERTa-v2/v3 checkpoint names and lays out each param (HF DebertaV2Model names,
prefixed "deberta." as *ForSequenceClassification saves them)."""

from __future__ import annotations

import numpy as np

from fjft.models.deberta.config import Config
from fjft.weights.hf_tensors import HFTensor, linear, linear_names, norm, tensor

PREFIX = "deberta."

# What checkpoints carry besides the encoder, which fjft skips: the position-id buffer,
# the heads of pretraining (MLM `cls.` / `lm_predictions.`, ELECTRA-style
# `mask_predictions.` of v3's discriminator) and of task models (ContextPooler `pooler.`,
# classifiers, question answering).
_BUFFERS = ("embeddings.position_ids",)
_HEADS = ("cls.", "lm_predictions.", "mask_predictions.", "pooler.", "classifier.",
          "qa_outputs.", "lm_head.")


def _conv_to_ours(a: np.ndarray) -> np.ndarray:   # [out, in/g, width] -> [width, in/g, out]
  return a.transpose(2, 1, 0)


def hf_tensors(cfg: Config) -> list[HFTensor]:
  """Every param and its HF tensor(s)."""
  h, e, inter, p = cfg.hidden_size, cfg.embed_dim, cfg.intermediate_size, PREFIX
  layer = p + "encoder.layer.{i}"
  att = f"{layer}.attention"

  def embedding(name, rows):
    return tensor(("embeddings", name, "embedding"), f"{p}embeddings.{name}.weight", (rows, e))

  out = [embedding("word_embeddings", cfg.vocab_size)]
  if cfg.position_biased_input:
    out.append(embedding("position_embeddings", cfg.max_position_embeddings))
  if cfg.type_vocab_size > 0:
    out.append(embedding("token_type_embeddings", cfg.type_vocab_size))
  if e != h:
    out += linear(("embeddings", "embed_proj"), f"{p}embeddings.embed_proj", e, h, bias=False)
  out += norm(("embeddings", "layer_norm"), f"{p}embeddings.LayerNorm", h, bias=True)
  if cfg.relative_attention:
    out.append(tensor(("rel_embeddings", "embedding"), f"{p}encoder.rel_embeddings.weight",
                      (2 * cfg.att_span, h)))
    if cfg.rel_layer_norm:
      out += norm(("rel_layer_norm",), f"{p}encoder.LayerNorm", h, bias=True)
  for name in ("query", "key", "value"):
    out += linear(("attention", name), f"{att}.self.{name}_proj", h, h, bias=True)
  if cfg.relative_attention and not cfg.share_att_key:
    if "c2p" in cfg.pos_att_type:
      out += linear(("attention", "pos_key"), f"{att}.self.pos_key_proj", h, h, bias=True)
    if "p2c" in cfg.pos_att_type:
      out += linear(("attention", "pos_query"), f"{att}.self.pos_query_proj", h, h, bias=True)
  out += [
      *linear(("attention", "output"), f"{att}.output.dense", h, h, bias=True),
      *norm(("attention", "layer_norm"), f"{att}.output.LayerNorm", h, bias=True),
      *linear(("intermediate",), f"{layer}.intermediate.dense", h, inter, bias=True),
      *linear(("output",), f"{layer}.output.dense", inter, h, bias=True),
      *norm(("output_layer_norm",), f"{layer}.output.LayerNorm", h, bias=True),
  ]
  if cfg.conv_kernel_size > 0:
    k = cfg.conv_kernel_size
    out += [
        tensor(("conv", "kernel"), f"{p}encoder.conv.conv.weight",
               (h, h // cfg.conv_groups, k), _conv_to_ours, _conv_to_ours),
        tensor(("conv", "bias"), f"{p}encoder.conv.conv.bias", (h,)),
        *norm(("conv", "layer_norm"), f"{p}encoder.conv.LayerNorm", h, bias=True),
    ]
  return out


def canonical_name(cfg: Config, key: str) -> str:
  """The table's name for a checkpoint's tensor: a bare DebertaV2Model's keys lack the
  "deberta." prefix; the heads of task models stay as they are."""
  if key.startswith(PREFIX) or key.startswith(_HEADS):
    return key
  return PREFIX + key


def ignorable(cfg: Config, key: str) -> bool:
  return key.startswith(_HEADS) or key.removeprefix(PREFIX) in _BUFFERS


def init_std(cfg: Config, path: tuple[str, ...]) -> float:
  # HF DebertaV2PreTrainedModel._init_weights: every kernel and embedding alike.
  return cfg.initializer_range


def hf_linear_names(cfg: Config, *, prefixed: bool = True) -> dict[str, tuple[str, ...]]:
  """Dotted path of each Linear ("layers.0.attention.query") -> its HF module name.
  `prefixed`: as in *ForSequenceClassification ("deberta.encoder..."); otherwise as in
  the bare DebertaV2Model ("encoder...")."""
  names = linear_names(hf_tensors(cfg), cfg.num_layers)
  if prefixed:
    return names
  return {k: tuple(n.removeprefix(PREFIX) for n in v) for k, v in names.items()}
