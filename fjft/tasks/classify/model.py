"""Sequence classification: pooled encoder output -> dropout -> linear head.

With the default pooling ("pooler": the [CLS] token through BERT's pooler) the head matches
transformers' *ForSequenceClassification (pooler + classifier), so a fine-tuned model
exports to an HF directory with the same logits. "mean" pools the real tokens' final hidden
states instead, the way sentence-transformers checkpoints (all-MiniLM-L6-v2) were trained
to summarise a sentence; HF's BERT head has no such mode, so those runs do not export.
Families whose HF head is not BERT's pooler + classifier are mapped in dense_head (here)
and fjft.tasks.classify.export.HF_HEAD_NAMES.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from fjft.errors import ConfigError
from fjft.models.layers import dropout as dropout_lib
from fjft.models.layers.activations import ACTIVATIONS
from fjft.models.layers.norms import LayerNorm
from fjft.models.pooling import pool

# Parameters whose paths match this are new, not loaded from the pretrained checkpoint.
HEAD_PATTERN = r"^(pre_)?classifier(_norm)?\."
POOLINGS = ("pooler", "mean")
# model_type -> the activation of the dense layer that HF's *ForSequenceClassification of
# that family puts between the [CLS] state and the classifier, for families whose encoder
# has no pooler doing it (BERT's pooler is dense + tanh; RoBERTa's head is the same on the
# encoder's pooler): DistilBERT's pre_classifier + ReLU, ELECTRA's dense + GELU. With
# pooling "pooler" the Classifier of such a family holds that layer (`pre_classifier`),
# so that it is HF's head and exports with the same logits.
DENSE_HEADS = {"distilbert": "relu", "electra": "gelu"}
# DeBERTa's ContextPooler: dense + pooler_hidden_act ("gelu" in the released configs).
DENSE_HEADS["deberta-v2"] = "gelu"


@dataclasses.dataclass(frozen=True)
class DenseHead:
  """The layers HF's head of a family puts between the pooled state and the classifier."""
  activation: str
  bias: bool = True
  norm_eps: float | None = None   # a LayerNorm after the activation (ModernBERT)
  norm_bias: bool = True
  after_mean: bool = False        # applied to a mean-pooled state too (ModernBERT)


def dense_head(hf_config: dict) -> DenseHead | None:
  """The DenseHead of an encoder's family (from its HF config), or None (BERT's pooler)."""
  model_type = hf_config.get("model_type")
  if model_type == "modernbert":
    # ModernBertPredictionHead: dense (classifier_bias) + classifier_activation + LayerNorm
    # (norm_eps, norm_bias), on the [CLS] state or the mean (classifier_pooling).
    return DenseHead(hf_config.get("classifier_activation", "gelu"),
                     bias=hf_config.get("classifier_bias", False),
                     norm_eps=hf_config.get("norm_eps", 1e-5),
                     norm_bias=hf_config.get("norm_bias", False), after_mean=True)
  activation = DENSE_HEADS.get(model_type)
  return None if activation is None else DenseHead(activation)


class Head(nnx.Module):
  """The new linear layer: logical axes (embed, labels), as every fjft parameter has."""

  def __init__(self, hidden_size: int, num_labels: int, *, rngs: nnx.Rngs,
               out_axis: str | None = "labels", bias: bool = True):
    w = 0.02 * jax.random.normal(rngs.params(), (hidden_size, num_labels), jnp.float32)
    self.kernel = nnx.Param(w, out_sharding=("embed", out_axis), eager_sharding=False)
    self.bias = (nnx.Param(jnp.zeros((num_labels,), jnp.float32), out_sharding=(out_axis,),
                           eager_sharding=False) if bias else None)

  def __call__(self, x):
    y = x @ self.kernel[...]
    return y if self.bias is None else y + self.bias[...]


class Classifier(nnx.Module):

  def __init__(self, encoder: nnx.Module, hidden_size: int, num_labels: int, dropout: float,
               *, rngs: nnx.Rngs, pooling: str = "pooler", dense: DenseHead | None = None):
    if pooling not in POOLINGS:
      raise ConfigError(f"config field model.pooling must be one of {', '.join(POOLINGS)} for "
                        f"classification, got {pooling!r}")
    self.encoder = encoder
    self.dropout = dropout
    self.pooling = pooling
    # HF initialises the head with N(0, 0.02) weights and zero bias; so do we.
    self.classifier = Head(hidden_size, num_labels, rngs=rngs)
    # The dense layer (and norm) of HF's head: on the [CLS] state (pooling "pooler"), or
    # on any pooled state where HF's head is (ModernBERT's).
    self.dense = dense if dense is not None and (pooling == "pooler" or dense.after_mean) else None
    if self.dense is not None:
      self.pre_classifier = Head(hidden_size, hidden_size, rngs=rngs, out_axis=None,
                                 bias=self.dense.bias)
      if self.dense.norm_eps is not None:
        self.pre_classifier_norm = LayerNorm(hidden_size, self.dense.norm_eps, rngs=rngs,
                                             bias=self.dense.norm_bias)

  def __call__(self, input_ids, attention_mask, *, dropout_key=None, compute_dtype=jnp.float32):
    enc_key = head_key = None
    if dropout_key is not None:
      enc_key, head_key = jax.random.split(dropout_key)
    hidden, pooled = self.encoder(input_ids, attention_mask, dropout_key=enc_key,
                                  compute_dtype=compute_dtype)
    if self.pooling == "mean":
      pooled = pool(hidden, attention_mask, "mean", False)
    if self.dense is not None:
      pooled = ACTIVATIONS[self.dense.activation](self.pre_classifier(pooled.astype(jnp.float32)))
      if self.dense.norm_eps is not None:
        pooled = self.pre_classifier_norm(pooled, jnp.float32)
    if head_key is not None and self.dropout > 0:
      pooled = dropout_lib.dropout(pooled, self.dropout, head_key)
    return self.classifier(pooled.astype(jnp.float32))


def set_head(model: Classifier, tensors: dict, where: str) -> None:
  """Sets the head from HF-named tensors (classifier.weight [labels, hidden], .bias)."""
  from fjft.errors import CheckpointError
  for name, var, value in (("classifier.weight", model.classifier.kernel, "T"),
                           ("classifier.bias", model.classifier.bias, "")):
    if name not in tensors:
      raise CheckpointError(f"{where}: no {name!r} for the classification head")
    arr = np.asarray(tensors[name], np.float32)
    arr = arr.T if value == "T" else arr
    if arr.shape != var.get_value().shape:
      raise CheckpointError(f"{where}: {name!r} is for a head of shape {arr.shape}; this run's "
                            f"is {var.get_value().shape} (another number of labels?)")
    var.set_value(jnp.asarray(arr))


def loss_fn(logits, batch):
  """(sum of weighted cross-entropy, sum of weights): padded rows weigh 0."""
  ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), batch["labels"])
  return jnp.sum(ce * batch["weights"]), jnp.sum(batch["weights"])


def predict_fn(logits, batch):
  del batch
  return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)


def metrics(y_true: np.ndarray, y_pred: np.ndarray, num_labels: int) -> dict:
  """Accuracy and macro-F1 (classes absent from both truth and prediction are left out)."""
  y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
  f1s = []
  for c in range(num_labels):
    tp = np.sum((y_pred == c) & (y_true == c))
    fp = np.sum((y_pred == c) & (y_true != c))
    fn = np.sum((y_pred != c) & (y_true == c))
    if tp + fp + fn == 0:
      continue
    f1s.append(2 * tp / (2 * tp + fp + fn))
  return {"accuracy": float(np.mean(y_true == y_pred)) if len(y_true) else 0.0,
          "macro_f1": float(np.mean(f1s)) if f1s else 0.0}
