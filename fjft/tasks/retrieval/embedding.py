"""Embed texts with a retrieval run's best model (or the pretrained model it started from)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fjft.run import opened as infer
from fjft.parallel import mesh as mesh_lib
from fjft.data import batches as batches_lib
from fjft.data.clean import normalize_text
from fjft.tasks.classify.task import per_example_outputs


def make_embed_step(graphdef, compute_dtype: str, mesh=None):
  """jit-compiled (params, batch) -> [B, H] float32 embeddings, no dropout; on a `mesh`,
  replicated, so every host reads the whole batch's embeddings."""
  dtype = jnp.dtype(compute_dtype)

  def embed_step(params, batch):
    model = nnx.merge(graphdef, params)
    return model(batch["input_ids"], batch["attention_mask"], compute_dtype=dtype)

  if mesh is None:
    return jax.jit(embed_step)
  return jax.jit(embed_step, out_shardings=mesh_lib.replicated(mesh))


def encode_texts(texts: list[str], tokenizer, max_length: int) -> batches_lib.Encoded:
  return batches_lib.encode(texts, np.zeros(len(texts), np.int32), tokenizer, max_length)


def embed_encoded(embed_step, params, enc: batches_lib.Encoded, batch_size: int, buckets,
                  pad_id: int, to_device=lambda batch: batch) -> np.ndarray:
  """[len(enc), H] embeddings in the examples' order (batches go in length order)."""
  return per_example_outputs(embed_step, params, enc, batch_size, buckets, pad_id, to_device)


def load(run_dir: str) -> infer.LoadedRun:
  return infer.load_run(run_dir, "retrieval")


def embed_texts(run: infer.LoadedRun, texts: list[str], batch_size: int = 64,
                kind: str = "doc") -> np.ndarray:
  """Embeddings of `texts`, cleaned as in training; `kind` ("query" or "doc") picks the
  run's maximum length and length buckets for that side."""
  info = run.info
  cleaned = [normalize_text(t) for t in texts]
  enc = encode_texts(cleaned, run.tokenizer, info[f"{kind}_max_length"])
  step = make_embed_step(run.graphdef, info["compute_dtype"])
  return embed_encoded(step, run.params, enc, batch_size, info[f"{kind}_buckets"],
                       run.tokenizer.pad_id)
