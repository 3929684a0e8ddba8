"""How a DistilBERT checkpoint names and lays out each param (HF DistilBertModel names,
prefixed "distilbert." as DistilBertForSequenceClassification saves them)."""

from __future__ import annotations

from fjft.models.bert.tensors import fused_qkv
from fjft.models.distilbert.config import Config
from fjft.weights.hf_tensors import HFTensor, linear, linear_names, norm, tensor

PREFIX = "distilbert."
_BUFFERS = ("embeddings.position_ids",)
# Heads of the pretraining and task models, which fjft skips: masked LM (vocab_*),
# sequence classification (pre_classifier, classifier), question answering.
_HEADS = ("vocab_transform.", "vocab_layer_norm.", "vocab_projector.", "pre_classifier.",
          "classifier.", "qa_outputs.")


def hf_tensors(cfg: Config) -> list[HFTensor]:
  """Every param and its HF tensor(s); q/k/v are fused into one [H, 3, H] kernel."""
  h, inter, p = cfg.hidden_size, cfg.intermediate_size, PREFIX
  layer = p + "transformer.layer.{i}"
  q_k_v = tuple(f"{layer}.attention.{n}_lin" for n in ("q", "k", "v"))
  return [
      tensor(("embeddings", "word_embeddings", "embedding"),
             f"{p}embeddings.word_embeddings.weight", (cfg.vocab_size, h)),
      tensor(("embeddings", "position_embeddings", "embedding"),
             f"{p}embeddings.position_embeddings.weight", (cfg.max_position_embeddings, h)),
      *norm(("embeddings", "layer_norm"), f"{p}embeddings.LayerNorm", h, bias=True),
      *fused_qkv(q_k_v, h),
      *linear(("attention", "output"), f"{layer}.attention.out_lin", h, h, bias=True),
      *norm(("attention", "layer_norm"), f"{layer}.sa_layer_norm", h, bias=True),
      *linear(("intermediate",), f"{layer}.ffn.lin1", h, inter, bias=True),
      *linear(("output",), f"{layer}.ffn.lin2", inter, h, bias=True),
      *norm(("output_layer_norm",), f"{layer}.output_layer_norm", h, bias=True),
  ]


def canonical_name(cfg: Config, key: str) -> str:
  """The table's name for a checkpoint's tensor: keys may lack the prefix (a bare
  DistilBertModel)."""
  return key if key.startswith(PREFIX) else PREFIX + key


def ignorable(cfg: Config, key: str) -> bool:
  rest = key[len(PREFIX):]
  return rest in _BUFFERS or rest.startswith(_HEADS)


def init_std(cfg: Config, path: tuple[str, ...]) -> float:
  # HF DistilBertPreTrainedModel._init_weights: every kernel and embedding alike.
  return cfg.initializer_range


def hf_linear_names(cfg: Config, *, prefixed: bool = True) -> dict[str, tuple[str, ...]]:
  """Dotted path of each Linear -> its HF module names (three for the fused q/k/v);
  `prefixed` as in DistilBertForSequenceClassification, otherwise as DistilBertModel."""
  names = linear_names(hf_tensors(cfg), cfg.num_layers)
  if prefixed:
    return names
  return {k: tuple(n.removeprefix(PREFIX) for n in v) for k, v in names.items()}
