"""How a BERT-family checkpoint names and lays out each param (HF BertModel names,
prefixed "bert." / "roberta." as *ForSequenceClassification saves them; XLM-RoBERTa's
"roberta." too)."""

from __future__ import annotations

import numpy as np

from fjft.models.bert.config import POSITION_OFFSET_FROM_PAD, Config
from fjft.weights.hf_tensors import HFTensor, linear, linear_names, norm, tensor

# model_type -> the prefix checkpoints put before the encoder's names (the task models'
# attribute, transformers' base_model_prefix): XLM-RoBERTa's is RoBERTa's.
PREFIX = {t: f"{'roberta' if t == 'xlm-roberta' else t}." for t in POSITION_OFFSET_FROM_PAD}
_PREFIXES = tuple(sorted(set(PREFIX.values())))

# Older BERT checkpoints (TF conversions) name LayerNorm params gamma/beta.
_LEGACY_SUFFIXES = {".LayerNorm.gamma": ".LayerNorm.weight",
                    ".LayerNorm.beta": ".LayerNorm.bias"}

# What BERT checkpoints carry besides the encoder, which fjft skips: buffers HF
# recomputes, and the heads of pretraining and task models (MLM / NSP `cls.`,
# RoBERTa's MLM `lm_head.`, sequence classification, question answering).
_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")
_HEADS = ("cls.", "lm_head.", "classifier.", "qa_outputs.")


def _prefix(cfg: Config) -> str:
  return PREFIX[cfg.model_type]


# q, k and v: HF's three [out, in] weights <-> our [in, 3, out] kernel, and their
# three biases <-> our [3, out] bias.
def _fuse_kernels(arrays) -> np.ndarray:
  return np.stack([a.T for a in arrays], axis=1)


def _unfuse_kernel(p: np.ndarray) -> list[np.ndarray]:
  return [p[:, j, :].T for j in range(3)]


def _unfuse_bias(p: np.ndarray) -> list[np.ndarray]:
  return [p[j] for j in range(3)]


def fused_qkv(q_k_v: tuple[str, str, str], h: int) -> list[HFTensor]:
  """The fused [H, 3, H] q/k/v kernel and [3, H] bias of HF modules q_k_v (three
  torch Linears H -> H): the entries of every family built of bert.modules' layers."""
  return [HFTensor(("attention", "qkv", "kernel"), tuple(f"{k}.weight" for k in q_k_v),
                   (h, h), _fuse_kernels, _unfuse_kernel),
          HFTensor(("attention", "qkv", "bias"), tuple(f"{k}.bias" for k in q_k_v), (h,),
                   np.stack, _unfuse_bias)]


def hf_tensors(cfg: Config) -> list[HFTensor]:
  """Every param and its HF tensor(s); q/k/v are fused into one [H, 3, H] kernel."""
  h, inter, p = cfg.hidden_size, cfg.intermediate_size, _prefix(cfg)
  layer = p + "encoder.layer.{i}"
  q_k_v = tuple(f"{layer}.attention.self.{n}" for n in ("query", "key", "value"))

  def embedding(name, rows):
    return tensor(("embeddings", name, "embedding"), f"{p}embeddings.{name}.weight", (rows, h))

  return [
      embedding("word_embeddings", cfg.vocab_size),
      embedding("position_embeddings", cfg.max_position_embeddings),
      embedding("token_type_embeddings", cfg.type_vocab_size),
      *norm(("embeddings", "layer_norm"), f"{p}embeddings.LayerNorm", h, bias=True),
      *fused_qkv(q_k_v, h),
      *linear(("attention", "output"), f"{layer}.attention.output.dense", h, h, bias=True),
      *norm(("attention", "layer_norm"), f"{layer}.attention.output.LayerNorm", h, bias=True),
      *linear(("intermediate",), f"{layer}.intermediate.dense", h, inter, bias=True),
      *linear(("output",), f"{layer}.output.dense", inter, h, bias=True),
      *norm(("output_layer_norm",), f"{layer}.output.LayerNorm", h, bias=True),
      # Optional: sentence-embedding checkpoints may have no pooler; HF then
      # initialises it at random, and so does fjft (with a warning).
      *linear(("pooler",), f"{p}pooler.dense", h, h, bias=True, optional=True),
  ]


def canonical_name(cfg: Config, key: str) -> str:
  """The table's name for a checkpoint's tensor: keys may lack the model prefix
  (a bare BertModel) or carry another family member's, and use gamma/beta."""
  for prefix in _PREFIXES:
    if key.startswith(prefix):
      key = key[len(prefix):]
      break
  for legacy, name in _LEGACY_SUFFIXES.items():
    if key.endswith(legacy):
      key = key[:-len(legacy)] + name
  return _prefix(cfg) + key


def ignorable(cfg: Config, key: str) -> bool:
  rest = key[len(_prefix(cfg)):]
  return rest in _BUFFERS or rest.startswith(_HEADS)


def init_std(cfg: Config, path: tuple[str, ...]) -> float:
  # HF BertPreTrainedModel._init_weights: every kernel and embedding alike.
  return cfg.initializer_range


def hf_linear_names(cfg: Config, *, prefixed: bool = True) -> dict[str, tuple[str, ...]]:
  """Dotted path of each Linear ("layers.0.attention.qkv") -> its HF module names: three
  for the fused q/k/v. `prefixed`: as in *ForSequenceClassification ("bert.encoder...");
  otherwise as in the bare BertModel ("encoder...")."""
  names = linear_names(hf_tensors(cfg), cfg.num_layers)
  if prefixed:
    return names
  return {k: tuple(n.removeprefix(_prefix(cfg)) for n in v) for k, v in names.items()}
