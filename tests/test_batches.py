"""Static-shape batching: buckets, padded final batch, deterministic resumable order."""

import numpy as np

from fjft.data import batches as B


def _enc(n=70, seed=0):
  rng = np.random.default_rng(seed)
  ids = [np.arange(1, 1 + rng.integers(3, 60), dtype=np.int32) for _ in range(n)]
  return B.Encoded(ids=ids, labels=np.arange(n, dtype=np.int32) % 3)


def test_every_example_once_per_epoch_and_static_shapes():
  enc = _enc()
  tb = B.TrainBatches(enc, batch_size=16, buckets=(16, 32, 64), pad_id=0, seed=3)
  assert tb.batches_per_epoch == 5
  seen, shapes = [], set()
  for step in range(tb.batches_per_epoch):
    b = tb.batch(step)
    shapes.add(b["input_ids"].shape)
    assert b["input_ids"].shape[0] == 16
    n = int(b["weights"].sum())
    # padded rows carry weight 0 and no tokens
    assert (b["attention_mask"][n:] == 0).all() and (b["weights"][n:] == 0).all()
    seen.extend(b["input_ids"][:n, 0].tolist())
  assert len(seen) == 70
  assert {s[1] for s in shapes} <= {16, 32, 64}


def test_order_is_a_function_of_seed_and_step():
  enc = _enc()
  a = B.TrainBatches(enc, 16, (16, 32, 64), 0, seed=1)
  b = B.TrainBatches(enc, 16, (16, 32, 64), 0, seed=1)
  for step in (7, 2, 11, 0):   # random access, as after a resume
    np.testing.assert_array_equal(a.batch(step)["input_ids"], b.batch(step)["input_ids"])
  assert b.position(11) == {"epoch": 2, "batch": 1}
  c = B.TrainBatches(enc, 16, (16, 32, 64), 0, seed=2)
  assert any((a.batch(s)["labels"] != c.batch(s)["labels"]).any() for s in range(5))


def test_eval_batches_cover_all_in_length_order():
  enc = _enc(37)
  got = []
  for idx, batch in B.eval_batches(enc, 8, (16, 32, 64), 0):
    assert batch["input_ids"].shape[0] == 8
    got.extend(idx.tolist())
  assert sorted(got) == list(range(37))


def test_bucket_length():
  assert B.bucket_length(1, (16, 32)) == 16
  assert B.bucket_length(17, (16, 32)) == 32
  assert B.bucket_length(99, (16, 32)) == 32
