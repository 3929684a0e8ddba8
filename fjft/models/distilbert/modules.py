"""The modules of a DistilBERT encoder: word + position embeddings (no token types), then
BERT's post-norm layers (fjft.models.bert.modules.Layer: DistilBERT's blocks compute the
same, under other tensor names), and no pooler."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from fjft.errors import ConfigError
from fjft.models.bert.modules import Layer
from fjft.models.distilbert.config import Config
from fjft.models.layers.dropout import dropout, fold
from fjft.models.layers.embed import Embed
from fjft.models.layers.norms import LayerNorm


class Embeddings(nnx.Module):
  """Word + position embeddings, then LayerNorm and dropout."""

  def __init__(self, cfg: Config, *, rngs: nnx.Rngs):
    std = cfg.initializer_range
    self.word_embeddings = Embed(cfg.vocab_size, cfg.hidden_size, ("vocab", "embed"), std,
                                 rngs=rngs)
    self.position_embeddings = Embed(cfg.max_position_embeddings, cfg.hidden_size,
                                     ("position", "embed"), std, rngs=rngs)
    self.layer_norm = LayerNorm(cfg.hidden_size, cfg.layer_norm_eps, rngs=rngs)

  def __call__(self, cfg: Config, input_ids: jax.Array, key: jax.Array | None,
               dtype: jnp.dtype) -> jax.Array:
    seq_len = input_ids.shape[1]
    if seq_len > cfg.max_position_embeddings:
      raise ConfigError(f"sequence length {seq_len} exceeds the model's"
                        f" max_position_embeddings={cfg.max_position_embeddings}")
    x = jnp.take(self.word_embeddings.embedding[...], input_ids, axis=0)
    x = x + self.position_embeddings.embedding[...][None, :seq_len]
    return dropout(self.layer_norm(x, dtype), cfg.hidden_dropout, key)


class Model(nnx.Module):
  """DistilBERT encoder returning (sequence_output, the [CLS] token's state)."""

  def __init__(self, cfg: Config, *, rngs: nnx.Rngs):
    self.cfg = cfg
    self.embeddings = Embeddings(cfg, rngs=rngs)
    self.layers = nnx.List([Layer(cfg, rngs=rngs) for _ in range(cfg.num_layers)])

  def __call__(self, input_ids: jax.Array, attention_mask: jax.Array,
               token_type_ids: jax.Array | None = None, *,
               dropout_key: jax.Array | None = None,
               compute_dtype: jnp.dtype = jnp.float32) -> tuple[jax.Array, jax.Array]:
    """As fjft.models.bert.Model, but DistilBERT has no token types (token_type_ids must
    be None) and no pooler: the second output is the [CLS] state, the input of HF's
    classification head (pre_classifier)."""
    if token_type_ids is not None:
      raise ConfigError("DistilBERT has no token type embeddings; pass token_type_ids=None")
    cfg = self.cfg
    x = self.embeddings(cfg, input_ids, fold(dropout_key, 0), compute_dtype)
    for i, layer in enumerate(self.layers):
      x = layer(cfg, x, attention_mask, fold(dropout_key, i + 1), compute_dtype)
    return x, x[:, 0]
