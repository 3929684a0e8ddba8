"""Embeddings with a retrieval run's model: jitted once per run (or per loaded run), over
length-bucketed batches."""

from __future__ import annotations

import jax
import numpy as np

from fjft.data import batches as batches_lib
from fjft.data.clean import normalize_text
from fjft.models import encoders
from fjft.parallel import mesh as mesh_lib
from fjft.training.outputs import per_example_outputs


def make_embed_step(graphdef, compute_dtype: str, mesh=None):
  """jit-compiled (params, batch) -> [B, H] float32 embeddings, no dropout; on a `mesh`,
  replicated, so every host reads the whole batch's embeddings."""
  apply_fn = encoders.make_apply_fn(graphdef, compute_dtype)   # no dropout key: no dropout
  if mesh is None:
    return jax.jit(apply_fn)
  return jax.jit(apply_fn, out_shardings=mesh_lib.replicated(mesh))


def encode_texts(texts: list[str], tokenizer, max_length: int) -> batches_lib.Encoded:
  return batches_lib.encode(texts, np.zeros(len(texts), np.int32), tokenizer, max_length)


def embed_encoded(embed_step, params, enc: batches_lib.Encoded, batch_size: int, buckets,
                  pad_id: int, to_device=lambda batch: batch) -> np.ndarray:
  """[len(enc), H] embeddings in the examples' order (batches go in length order)."""
  return per_example_outputs(embed_step, params, enc, batch_size, buckets, pad_id, to_device)


def embed_texts(run, texts: list[str], batch_size: int = 64, kind: str = "doc") -> np.ndarray:
  """Embeddings of `texts` with a loaded run (fjft.run.opened), cleaned as in training;
  `kind` ("query" or "doc") picks the run's maximum length and length buckets for that side."""
  info = run.info
  if "embed" not in run.compiled:
    run.compiled["embed"] = make_embed_step(run.graphdef, info["compute_dtype"])
  cleaned = [normalize_text(t) for t in texts]
  enc = encode_texts(cleaned, run.tokenizer, info[f"{kind}_max_length"])
  # no batch larger than the texts: rows past them would be padding, allocated all the same
  return embed_encoded(run.compiled["embed"], run.params, enc,
                       max(1, min(batch_size, len(texts))), info[f"{kind}_buckets"], run.tokenizer.pad_id)
