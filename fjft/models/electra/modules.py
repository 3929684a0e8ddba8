"""The modules of an ELECTRA discriminator: BERT's embeddings at embedding_size, a
projection to hidden_size when the two differ, BERT's post-norm layers
(fjft.models.bert.modules.Layer), and no pooler."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from fjft.errors import ConfigError
from fjft.models.bert.modules import Layer
from fjft.models.electra.config import Config
from fjft.models.layers.dropout import dropout, fold
from fjft.models.layers.embed import Embed
from fjft.models.layers.linear import Linear
from fjft.models.layers.norms import LayerNorm


class Embeddings(nnx.Module):
  """Word + position + token-type embeddings of width embedding_size, LayerNorm, dropout."""

  def __init__(self, cfg: Config, *, rngs: nnx.Rngs):
    e, std = cfg.embedding_size, cfg.initializer_range
    self.word_embeddings = Embed(cfg.vocab_size, e, ("vocab", "embed"), std, rngs=rngs)
    self.position_embeddings = Embed(cfg.max_position_embeddings, e, ("position", "embed"),
                                     std, rngs=rngs)
    self.token_type_embeddings = Embed(cfg.type_vocab_size, e, ("types", "embed"), std,
                                       rngs=rngs)
    self.layer_norm = LayerNorm(e, cfg.layer_norm_eps, rngs=rngs)

  def __call__(self, cfg: Config, input_ids: jax.Array, token_type_ids: jax.Array | None,
               key: jax.Array | None, dtype: jnp.dtype) -> jax.Array:
    seq_len = input_ids.shape[1]
    if seq_len > cfg.max_position_embeddings:
      raise ConfigError(f"sequence length {seq_len} exceeds the model's"
                        f" max_position_embeddings={cfg.max_position_embeddings}")
    x = jnp.take(self.word_embeddings.embedding[...], input_ids, axis=0)
    x = x + self.position_embeddings.embedding[...][None, :seq_len]
    types = self.token_type_embeddings.embedding[...]
    if token_type_ids is None:
      x = x + types[0]
    else:
      x = x + jnp.take(types, token_type_ids, axis=0)
    return dropout(self.layer_norm(x, dtype), cfg.hidden_dropout, key)


class Model(nnx.Module):
  """ELECTRA discriminator encoder returning (sequence_output, the [CLS] token's state)."""

  def __init__(self, cfg: Config, *, rngs: nnx.Rngs):
    self.cfg = cfg
    self.embeddings = Embeddings(cfg, rngs=rngs)
    if cfg.projects_embeddings:
      self.embeddings_project = Linear(cfg.embedding_size, (cfg.hidden_size,),
                                       (None, "embed"), ("embed",), cfg.initializer_range,
                                       stack=None, rngs=rngs)
    self.layers = nnx.List([Layer(cfg, rngs=rngs) for _ in range(cfg.num_layers)])

  def __call__(self, input_ids: jax.Array, attention_mask: jax.Array,
               token_type_ids: jax.Array | None = None, *,
               dropout_key: jax.Array | None = None,
               compute_dtype: jnp.dtype = jnp.float32) -> tuple[jax.Array, jax.Array]:
    """As fjft.models.bert.Model, but ELECTRA has no pooler: the second output is the
    [CLS] state, the input of HF's classification head (dense + GELU + out_proj)."""
    cfg = self.cfg
    x = self.embeddings(cfg, input_ids, token_type_ids, fold(dropout_key, 0), compute_dtype)
    if cfg.projects_embeddings:
      x = self.embeddings_project(x, compute_dtype)
    for i, layer in enumerate(self.layers):
      x = layer(cfg, x, attention_mask, fold(dropout_key, i + 1), compute_dtype)
    return x, x[:, 0]
