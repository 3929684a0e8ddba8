"""How an ELECTRA checkpoint names and lays out each param (HF ElectraModel names,
prefixed "electra." as ElectraForSequenceClassification saves them)."""

from __future__ import annotations

from fjft.models.bert.tensors import fused_qkv
from fjft.models.electra.config import Config
from fjft.weights.hf_tensors import HFTensor, linear, linear_names, norm, tensor

PREFIX = "electra."
_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")
# Heads of the pretraining and task models, which fjft skips: the discriminator's
# replaced-token head, the generator's MLM head, classification, question answering.
_HEADS = ("discriminator_predictions.", "generator_predictions.", "generator_lm_head.",
          "classifier.", "qa_outputs.", "sequence_summary.")


def hf_tensors(cfg: Config) -> list[HFTensor]:
  """Every param and its HF tensor(s); q/k/v are fused into one [H, 3, H] kernel."""
  e, h, inter, p = cfg.embedding_size, cfg.hidden_size, cfg.intermediate_size, PREFIX
  layer = p + "encoder.layer.{i}"
  q_k_v = tuple(f"{layer}.attention.self.{n}" for n in ("query", "key", "value"))

  def embedding(name, rows):
    return tensor(("embeddings", name, "embedding"), f"{p}embeddings.{name}.weight", (rows, e))

  project = (linear(("embeddings_project",), f"{p}embeddings_project", e, h, bias=True)
             if cfg.projects_embeddings else [])
  return [
      embedding("word_embeddings", cfg.vocab_size),
      embedding("position_embeddings", cfg.max_position_embeddings),
      embedding("token_type_embeddings", cfg.type_vocab_size),
      *norm(("embeddings", "layer_norm"), f"{p}embeddings.LayerNorm", e, bias=True),
      *project,
      *fused_qkv(q_k_v, h),
      *linear(("attention", "output"), f"{layer}.attention.output.dense", h, h, bias=True),
      *norm(("attention", "layer_norm"), f"{layer}.attention.output.LayerNorm", h, bias=True),
      *linear(("intermediate",), f"{layer}.intermediate.dense", h, inter, bias=True),
      *linear(("output",), f"{layer}.output.dense", inter, h, bias=True),
      *norm(("output_layer_norm",), f"{layer}.output.LayerNorm", h, bias=True),
  ]


def canonical_name(cfg: Config, key: str) -> str:
  """The table's name for a checkpoint's tensor: keys may lack the prefix (a bare
  ElectraModel)."""
  return key if key.startswith(PREFIX) else PREFIX + key


def ignorable(cfg: Config, key: str) -> bool:
  rest = key[len(PREFIX):]
  return rest in _BUFFERS or rest.startswith(_HEADS)


def init_std(cfg: Config, path: tuple[str, ...]) -> float:
  # HF ElectraPreTrainedModel._init_weights: every kernel and embedding alike.
  return cfg.initializer_range


def hf_linear_names(cfg: Config, *, prefixed: bool = True) -> dict[str, tuple[str, ...]]:
  """Dotted path of each Linear -> its HF module names (three for the fused q/k/v);
  `prefixed` as in ElectraForSequenceClassification, otherwise as ElectraModel."""
  names = linear_names(hf_tensors(cfg), cfg.num_layers)
  if prefixed:
    return names
  return {k: tuple(n.removeprefix(PREFIX) for n in v) for k, v in names.items()}
