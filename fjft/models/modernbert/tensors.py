"""How a ModernBERT checkpoint names and lays out each param (HF ModernBertModel names,
prefixed "model." as *ForSequenceClassification / *ForMaskedLM save them)."""

from __future__ import annotations

import math

from fjft.models.modernbert.config import Config
from fjft.weights.hf_tensors import HFTensor, linear, linear_names, norm, tensor

PREFIX = "model."

# What checkpoints carry besides the encoder, which fjft skips: the heads of the
# pretraining and task models (prediction head `head.`, MLM `decoder.`, `classifier.`).
_HEADS = ("head.", "decoder.", "classifier.", "drop.")


def _fused(n: int, out: int):
  """HF [n * out, in] (n parts stacked: q/k/v, or GeGLU's input/gate) <-> ours [in, n, out];
  the biases [n * out] <-> [n, out]."""
  kernel = (lambda a: a.T.reshape(a.shape[1], n, out),
            lambda p: p.reshape(p.shape[0], n * out).T)
  bias = (lambda a: a.reshape(n, out), lambda p: p.reshape(n * out))
  return kernel, bias


def _fused_linear(path, hf: str, n_in: int, n: int, out: int, bias: bool) -> list[HFTensor]:
  (k_ours, k_hf), (b_ours, b_hf) = _fused(n, out)
  entries = [tensor((*path, "kernel"), f"{hf}.weight", (n * out, n_in), k_ours, k_hf)]
  if bias:
    entries.append(tensor((*path, "bias"), f"{hf}.bias", (n * out,), b_ours, b_hf))
  return entries


def hf_tensors(cfg: Config) -> list[HFTensor]:
  """Every param and its HF tensor(s). Layer 0 has no attention norm, so the other
  layers' are listed one by one (outside the per-layer "{i}" entries)."""
  h, inter, p, nb = cfg.hidden_size, cfg.intermediate_size, PREFIX, cfg.norm_bias
  layer = p + "layers.{i}"
  return [
      tensor(("embeddings", "tok_embeddings", "embedding"),
             f"{p}embeddings.tok_embeddings.weight", (cfg.vocab_size, h)),
      *norm(("embeddings", "norm"), f"{p}embeddings.norm", h, bias=nb),
      *[t for i in range(1, cfg.num_layers)
        for t in norm(("layers", str(i), "attn_norm"), f"{p}layers.{i}.attn_norm", h, bias=nb)],
      *_fused_linear(("attn", "qkv"), f"{layer}.attn.Wqkv", h, 3, h, cfg.attention_bias),
      *linear(("attn", "output"), f"{layer}.attn.Wo", h, h, bias=cfg.attention_bias),
      *norm(("mlp_norm",), f"{layer}.mlp_norm", h, bias=nb),
      *_fused_linear(("mlp", "wi"), f"{layer}.mlp.Wi", h, 2, inter, cfg.mlp_bias),
      *linear(("mlp", "wo"), f"{layer}.mlp.Wo", inter, h, bias=cfg.mlp_bias),
      *norm(("final_norm",), f"{p}final_norm", h, bias=nb),
  ]


def canonical_name(cfg: Config, key: str) -> str:
  """The table's name for a checkpoint's tensor: a bare ModernBertModel's keys lack the
  "model." prefix; the heads of task models stay as they are."""
  if key.startswith(PREFIX) or key.startswith(_HEADS):
    return key
  return PREFIX + key


def ignorable(cfg: Config, key: str) -> bool:
  return key.startswith(_HEADS)


def init_std(cfg: Config, path: tuple[str, ...]) -> float:
  # HF ModernBertPreTrainedModel._init_weights: the output projections (attention and MLP
  # Wo) at initializer_range / sqrt(2 * layers), the rest at initializer_range (HF draws
  # them truncated at initializer_cutoff_factor std; fjft's random init does not).
  if len(path) >= 2 and path[-2] in ("output", "wo"):
    return cfg.initializer_range / math.sqrt(2.0 * cfg.num_layers)
  return cfg.initializer_range


def hf_linear_names(cfg: Config, *, prefixed: bool = True) -> dict[str, tuple[str, ...]]:
  """Dotted path of each Linear ("layers.0.attn.qkv") -> its HF module name.
  `prefixed`: as in *ForSequenceClassification ("model.layers..."); otherwise as in the
  bare ModernBertModel ("layers...")."""
  names = linear_names(hf_tensors(cfg), cfg.num_layers)
  if prefixed:
    return names
  return {k: tuple(n.removeprefix(PREFIX) for n in v) for k, v in names.items()}


