"""Evaluation outputs example by example: a jitted per-batch function over length-bucketed
batches, gathered back into the examples' order."""

from __future__ import annotations

import jax
import numpy as np

from fjft.data import batches as batches_lib
from fjft.errors import FjftError


def per_example_outputs(eval_step, params, enc, batch_size: int, buckets, pad_id: int,
                        to_device=lambda batch: batch) -> np.ndarray:
  """eval_step's row for every example of `enc` (class probabilities, embeddings), as
  float32 [len(enc), ...] in the examples' original order."""
  if not len(enc):
    raise FjftError("nothing to predict: no examples")
  out = None
  for idx, batch in batches_lib.eval_batches(enc, batch_size, buckets, pad_id):
    rows = np.asarray(jax.device_get(eval_step(params, to_device(batch))))
    if out is None:
      out = np.zeros((len(enc),) + rows.shape[1:], np.float32)
    out[idx] = rows[:len(idx)]
  return out
