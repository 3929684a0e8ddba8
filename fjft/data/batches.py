"""Tokenized examples -> fixed-shape batches.

Shapes are static so a run compiles a handful of times: every batch has the configured
batch size (the last one padded with zero-weight rows) and a sequence length taken from
a small set of buckets. The data order of epoch e is a pure function of (seed, e), so
the iterator state is just the step number, saved in every checkpoint.
"""

from __future__ import annotations

import dataclasses

import numpy as np

# Examples in a window are sorted by length before batching so a batch needs less
# padding; batches are then shuffled so lengths do not drift through an epoch.
SORT_WINDOW_BATCHES = 64


@dataclasses.dataclass
class Encoded:
  ids: list[np.ndarray]   # token ids per example (int32), specials included
  labels: np.ndarray      # int32 label index per example

  def __len__(self) -> int:
    return len(self.ids)

  @property
  def lengths(self) -> np.ndarray:
    return np.fromiter((len(x) for x in self.ids), dtype=np.int32, count=len(self.ids))


def encode(texts, label_ids, tokenizer, max_length: int) -> Encoded:
  ids = [np.asarray(x, np.int32) for x in tokenizer.encode_batch(list(texts), max_length)]
  return Encoded(ids=ids, labels=np.asarray(label_ids, np.int32))


def bucket_length(length: int, buckets) -> int:
  for b in sorted(buckets):
    if length <= b:
      return int(b)
  return int(max(buckets))


def make_batch(enc: Encoded, idx: np.ndarray, batch_size: int, buckets, pad_id: int) -> dict:
  """Pads examples `idx` into [batch_size, bucket] arrays; missing rows get weight 0."""
  seq = bucket_length(int(max(len(enc.ids[i]) for i in idx)), buckets)
  input_ids = np.full((batch_size, seq), pad_id, np.int32)
  mask = np.zeros((batch_size, seq), np.int32)
  labels = np.zeros((batch_size,), np.int32)
  weights = np.zeros((batch_size,), np.float32)
  for row, i in enumerate(idx):
    x = enc.ids[i][:seq]
    input_ids[row, :len(x)] = x
    mask[row, :len(x)] = 1
    labels[row] = enc.labels[i]
    weights[row] = 1.0
  return {"input_ids": input_ids, "attention_mask": mask, "labels": labels, "weights": weights}


def epoch_plan(lengths: np.ndarray, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
  """The example indices of every batch of one epoch, in order."""
  rng = np.random.default_rng([seed, epoch])
  perm = rng.permutation(len(lengths))
  window = batch_size * SORT_WINDOW_BATCHES
  batches = []
  for start in range(0, len(perm), window):
    chunk = perm[start:start + window]
    chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
    batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
  order = rng.permutation(len(batches))
  return [batches[i] for i in order]


class TrainBatches:
  """Batch of any step, resumable from the step number alone."""

  def __init__(self, enc: Encoded, batch_size: int, buckets, pad_id: int, seed: int):
    self.enc, self.batch_size, self.buckets, self.pad_id, self.seed = enc, batch_size, buckets, pad_id, seed
    self.lengths = enc.lengths
    self.batches_per_epoch = -(-len(enc) // batch_size)
    self._plan_epoch, self._plan = -1, []

  def position(self, step: int) -> dict:
    """Iterator state of the batch that `step` trains on."""
    return {"epoch": step // self.batches_per_epoch, "batch": step % self.batches_per_epoch}

  def batch(self, step: int) -> dict:
    pos = self.position(step)
    if pos["epoch"] != self._plan_epoch:
      self._plan = epoch_plan(self.lengths, self.batch_size, self.seed, pos["epoch"])
      self._plan_epoch = pos["epoch"]
    return make_batch(self.enc, self._plan[pos["batch"]], self.batch_size, self.buckets, self.pad_id)


def eval_batches(enc: Encoded, batch_size: int, buckets, pad_id: int):
  """Yields (example indices, batch) in length order so little is padded."""
  order = np.argsort(enc.lengths, kind="stable")
  for start in range(0, len(order), batch_size):
    idx = order[start:start + batch_size]
    yield idx, make_batch(enc, idx, batch_size, buckets, pad_id)
