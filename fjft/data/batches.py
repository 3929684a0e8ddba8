"""Tokenized examples -> fixed-shape batches: the generic pieces every task's batches use.

Shapes are static so a run compiles a handful of times: every batch has the configured
batch size (the last one padded with zero-weight rows) and a sequence length taken from
a small set of buckets. The data order of epoch e is a pure function of (seed, e), so
the iterator state is just the step number, saved in every checkpoint.

The pieces: StepBatches (step -> epoch and batch, the per-epoch shuffle), bucket_length
and pad_to_bucket (ragged token ids -> [rows, bucket] ids and mask), fill_rows and
row_weights (the padded last batch). TrainBatches and eval_batches batch labelled texts
with them; fjft.data.packing's RowBatches (token rows) and the tasks' own batchers (e.g.
query/document pairs) do too.
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


def pad_to_bucket(seqs, rows, size: int, buckets, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
  """[size, bucket] int32 ids and attention mask holding seqs[k] in row rows[k] (cut to the
  bucket); the bucket is the smallest that fits the longest of `seqs`."""
  seq = bucket_length(max((len(x) for x in seqs), default=1), buckets)
  ids = np.full((size, seq), pad_id, np.int32)
  mask = np.zeros((size, seq), np.int32)
  for row, x in zip(rows, seqs):
    x = x[:seq]
    ids[row, :len(x)] = x
    mask[row, :len(x)] = 1
  return ids, mask


def fill_rows(a: np.ndarray, idx, size: int) -> np.ndarray:
  """a[idx] in the first len(idx) of `size` rows; the rest zeros (padding)."""
  out = np.zeros((size,) + a.shape[1:], a.dtype)
  out[:len(idx)] = a[idx]
  return out


def row_weights(n: int, size: int) -> np.ndarray:
  """float32 [size]: 1 for the n real rows of a batch, 0 for its padding rows."""
  return (np.arange(size) < n).astype(np.float32)


def make_batch(enc: Encoded, idx: np.ndarray, batch_size: int, buckets, pad_id: int) -> dict:
  """Pads examples `idx` into [batch_size, bucket] arrays; missing rows get weight 0."""
  input_ids, mask = pad_to_bucket([enc.ids[i] for i in idx], range(len(idx)), batch_size,
                                  buckets, pad_id)
  labels = fill_rows(np.asarray(enc.labels, np.int32), idx, batch_size)
  return {"input_ids": input_ids, "attention_mask": mask, "labels": labels,
          "weights": row_weights(len(idx), batch_size)}


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


class StepBatches:
  """The batches of `n` examples (or rows, or pairs) by step: each epoch visits every one
  once, in batches of `batch_size` (the last one short, padded by the subclass); the batch
  of a step is a pure function of (seed, step), so resuming needs the step only."""

  def __init__(self, n: int, batch_size: int, seed: int):
    self.n, self.batch_size, self.seed = n, batch_size, seed
    self.batches_per_epoch = -(-n // batch_size)

  def position(self, step: int) -> dict:
    """Iterator state of the batch that `step` trains on."""
    return {"epoch": step // self.batches_per_epoch, "batch": step % self.batches_per_epoch}

  def shuffled(self, step: int) -> np.ndarray:
    """The indices of `step`'s batch when every epoch is one permutation of (seed, epoch)."""
    pos = self.position(step)
    order = np.random.default_rng([self.seed, pos["epoch"]]).permutation(self.n)
    return order[pos["batch"] * self.batch_size:(pos["batch"] + 1) * self.batch_size]


class TrainBatches(StepBatches):
  """Classification batches: length-sorted windows, shuffled batches (epoch_plan)."""

  def __init__(self, enc: Encoded, batch_size: int, buckets, pad_id: int, seed: int):
    super().__init__(len(enc), batch_size, seed)
    self.enc, self.buckets, self.pad_id = enc, buckets, pad_id
    self.lengths = enc.lengths
    self._plan_epoch, self._plan = -1, []

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
