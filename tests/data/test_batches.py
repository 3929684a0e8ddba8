"""Static-shape batching: buckets, padded final batch, deterministic resumable order, and
every example exactly once per epoch (classification batches, LM row batches, search pairs)."""

import collections

import ml_collections
import numpy as np

from fjft.data import batches as B
from fjft.data import packing as P
from fjft.tasks.retrieval import data as ir_data
from fjft.tasks.retrieval.pairs import PairBatches

FIRST_ID = 1000  # example i's first token is FIRST_ID + i: a row says which example it holds


def _enc(n=70, seed=0):
  rng = np.random.default_rng(seed)
  ids = [np.concatenate([[FIRST_ID + i], np.arange(1, rng.integers(3, 60))]).astype(np.int32)
         for i in range(n)]
  return B.Encoded(ids=ids, labels=np.arange(n, dtype=np.int32) % 3)


def test_every_example_once_per_epoch_in_its_own_row_and_static_shapes():
  enc = _enc()
  tb = B.TrainBatches(enc, batch_size=16, buckets=(16, 32, 64), pad_id=0, seed=3)
  assert tb.batches_per_epoch == 5
  shapes, orders = set(), []
  for epoch in range(3):
    seen = []
    for step in range(epoch * 5, epoch * 5 + 5):
      b = tb.batch(step)
      shapes.add(b["input_ids"].shape)
      assert b["input_ids"].shape[0] == 16
      n = int(b["weights"].sum())
      assert (b["weights"][:n] == 1).all()
      # padded rows carry weight 0 and no tokens
      assert (b["attention_mask"][n:] == 0).all() and (b["input_ids"][n:] == 0).all()
      for row in range(n):
        i = int(b["input_ids"][row, 0]) - FIRST_ID
        length = min(len(enc.ids[i]), b["input_ids"].shape[1])
        np.testing.assert_array_equal(b["input_ids"][row, :length], enc.ids[i][:length])
        assert b["attention_mask"][row].sum() == length and b["labels"][row] == enc.labels[i]
        seen.append(i)
    # each example once: none lost, none in two rows
    assert sorted(seen) == list(range(70)), epoch
    orders.append(seen)
  assert orders[0] != orders[1] != orders[2]   # reshuffled every epoch
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
    assert list(batch["input_ids"][:len(idx), 0] - FIRST_ID) == idx.tolist()
    assert (batch["weights"][len(idx):] == 0).all()
    got.extend(idx.tolist())
  assert sorted(got) == list(range(37))


def test_bucket_length_and_padding():
  assert B.bucket_length(1, (16, 32)) == 16
  assert B.bucket_length(17, (16, 32)) == 32
  assert B.bucket_length(99, (16, 32)) == 32
  ids, mask = B.pad_to_bucket([np.arange(1, 4), np.arange(1, 40)], [2, 0], 3, (8, 16), pad_id=7)
  assert ids.shape == (3, 16) and (ids[1] == 7).all() and (mask[1] == 0).all()
  assert ids[2, :4].tolist() == [1, 2, 3, 7] and mask[0].sum() == 16   # cut to the bucket
  assert B.row_weights(2, 4).tolist() == [1, 1, 0, 0]


def _lm_examples(n, seed=0):
  """LM examples whose first token (FIRST_ID + i) names them."""
  rng = np.random.default_rng(seed)
  out = []
  for i in range(n):
    k = int(rng.integers(3, 14))
    ids = np.concatenate([[FIRST_ID + i], rng.integers(1, 60, k - 1)]).astype(np.int32)
    out.append(P.LMExample(ids, rng.random(k) < 0.7, f"x:{i}"))
  return out


def _examples_in(batch, row):
  seg = batch["segment_ids"][row]
  return [int(batch["input_ids"][row][seg == s][0]) - FIRST_ID for s in range(1, seg.max() + 1)]


def test_lm_row_batches_give_every_row_and_example_once_per_epoch():
  examples = _lm_examples(90)
  for rows in (P.pack(examples, 32, pad_id=0), P.one_per_row(examples, 16, pad_id=0)):
    rb = P.RowBatches(rows, batch_size=8, seed=5)
    per_epoch = rb.batches_per_epoch
    assert per_epoch == -(-len(rows) // 8)
    orders = []
    for epoch in range(3):
      seen_rows, seen_examples = [], []
      for step in range(epoch * per_epoch, (epoch + 1) * per_epoch):
        b = rb.batch(step)
        assert all(v.shape[0] == 8 for v in b.values())
        real = b["segment_ids"].max(axis=1) > 0
        n = int(real.sum())
        assert real[:n].all() and not real[n:].any()
        # padding rows: no tokens, nothing trains
        assert not b["loss_mask"][n:].any() and (b["input_ids"][n:] == 0).all()
        for row in range(n):
          held = _examples_in(b, row)
          r = next(r for r in range(len(rows)) if (rows.input_ids[r] == b["input_ids"][row]).all())
          np.testing.assert_array_equal(rows.loss_mask[r], b["loss_mask"][row])
          seen_rows.append(r)
          seen_examples.extend(held)
      assert sorted(seen_rows) == list(range(len(rows))), epoch
      assert sorted(seen_examples) == list(range(90)), epoch
      orders.append(seen_rows)
    assert orders[0] != orders[1]
    np.testing.assert_array_equal(rb.batch(per_epoch + 1)["input_ids"],
                                  P.RowBatches(rows, 8, seed=5).batch(per_epoch + 1)["input_ids"])


def test_search_pair_batches_give_every_pair_once_per_epoch():
  n_docs, n_queries = 12, 9
  docs = [f"doc {i}" for i in range(n_docs)]
  queries = {f"q{i}": f"query {i}" for i in range(n_queries)}
  qrels = {f"q{i}": {f"d{i}": 1, f"d{(i + 1) % n_docs}": 2 * (i % 2), f"d{i + 3}": 0}
           for i in range(n_queries)}
  collection = ir_data.Collection([f"d{i}" for i in range(n_docs)], docs, queries, qrels,
                                  {q: "train" for q in queries}, {}, {})
  tokens = lambda first, n: B.Encoded([np.asarray([first + i, 5, 6], np.int32) for i in range(n)],
                                      np.zeros(n, np.int32))
  config = ml_collections.ConfigDict({
      "seed": 2, "train": {"batch_size": 4}, "loss": {"hard_negatives": 0, "mine_depth": 5},
      "data": {"min_gain": 1, "path": "pairs", "query_buckets": (4, 8),
               "doc_buckets": (4, 8)}})
  pb = PairBatches(collection, tokens(FIRST_ID, n_docs), tokens(2 * FIRST_ID, n_queries),
                   {q: i for i, q in enumerate(queries)}, None, 0, config)
  pairs = sorted((i, i) for i in range(n_queries)) + [(i, (i + 1) % n_docs)
                                                      for i in range(1, n_queries, 2)]
  assert pb.batches_per_epoch == -(-len(pairs) // 4)
  for epoch in range(2):
    seen = []
    for step in range(epoch * pb.batches_per_epoch, (epoch + 1) * pb.batches_per_epoch):
      b = pb.batch(step)
      n = int(b["weights"].sum())
      assert b["q_ids"].shape == (4, 4) and (b["q_mask"][n:] == 0).all()
      assert (b["doc_index"][n:] == -1).all()
      for row in range(n):
        q, d = int(b["q_ids"][row, 0]) - 2 * FIRST_ID, int(b["doc_index"][row])
        assert int(b["d_ids"][row, 0]) - FIRST_ID == d
        seen.append((q, d))
    assert sorted(seen) == sorted(pairs) and max(collections.Counter(seen).values()) == 1
