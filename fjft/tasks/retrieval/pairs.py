"""Training batches of a search run: (query, relevant document) pairs with hard negatives."""

from __future__ import annotations

import numpy as np

from fjft.data import batches as batches_lib
from fjft.errors import DataError
from fjft.tasks.retrieval import data as ir_data
from fjft.tasks.retrieval.ranking import top_k_of_scores


class PairBatches(batches_lib.StepBatches):
  """The batch of any step, a pure function of (seed, step), so resuming needs the step only.

  Each epoch visits every (train query, relevant document) pair once, in an order drawn
  from (seed, epoch) (StepBatches.shuffled); each pair brings config.loss.hard_negatives
  documents drawn from its query's negatives: those the data names, then the top BM25 hits
  among the documents not judged relevant (config.loss.mine_depth of them). The last batch
  of an epoch is padded with rows of weight 0.
  """

  def __init__(self, data: ir_data.Collection, docs_enc, queries_enc, query_row: dict, bm25,
               pad_id: int, config):
    self.config, self.docs_enc, self.queries_enc = config, docs_enc, queries_enc
    self.pad_id = pad_id
    self.n_neg = config.loss.hard_negatives
    self.group = 1 + self.n_neg
    doc_row = {doc: i for i, doc in enumerate(data.doc_ids)}
    train = data.split_queries("train")
    self.pairs = [(query_row[q], doc_row[doc]) for q in train
                  for doc, gain in data.qrels[q].items() if gain >= config.data.min_gain]
    if not self.pairs:
      raise DataError(f"{config.data.path}: no training pairs (no train judgement with "
                              f"gain >= data.min_gain={config.data.min_gain})")
    # every document relevant to a query: never its negative, in the loss or here
    self.relevant = {query_row[q]: [doc_row[doc] for doc, g in data.qrels[q].items() if g > 0]
                     for q in train}
    self.width = max(len(v) for v in self.relevant.values())
    self.negatives: dict[int, list[int]] = {}
    if self.n_neg:
      mined = top_k_of_scores(bm25.scores([data.queries[q] for q in train]),
                              config.loss.mine_depth + self.width)[0]
      for q, row in zip(train, mined):
        qi, rel = query_row[q], set(self.relevant[query_row[q]])
        given = [doc_row[doc] for doc in data.negatives.get(q, [])]
        pool = given + [int(j) for j in row if j not in rel and j not in given]
        self.negatives[qi] = pool[:len(given) + config.loss.mine_depth]
    super().__init__(len(self.pairs), config.train.batch_size, config.seed)

  def batch(self, step: int) -> dict:
    pos = self.position(step)
    chosen = self.shuffled(step)
    neg_rng = np.random.default_rng([self.seed, pos["epoch"], pos["batch"], 1])
    b, g = self.batch_size, self.group
    queries, docs = [], []
    doc_index = np.full((b * g,), -1, np.int32)
    relevant = np.full((b, self.width), -1, np.int32)
    for row, p in enumerate(chosen):
      qi, di = self.pairs[p]
      pool = self.negatives.get(qi, [])
      negs = list(neg_rng.choice(pool, size=min(self.n_neg, len(pool)), replace=False)) if pool else []
      queries.append(qi)
      group = [di] + [int(x) for x in negs]
      doc_index[row * g:row * g + len(group)] = group
      docs.append(group)
      rel = self.relevant[qi]
      relevant[row, :len(rel)] = rel
    q_ids, q_mask = batches_lib.pad_to_bucket([self.queries_enc.ids[q] for q in queries],
                                              range(len(queries)), b,
                                              self.config.data.query_buckets, self.pad_id)
    slots = [(row * g + k, d) for row, group in enumerate(docs) for k, d in enumerate(group)]
    d_ids, d_mask = batches_lib.pad_to_bucket([self.docs_enc.ids[d] for _, d in slots],
                                              [slot for slot, _ in slots], b * g,
                                              self.config.data.doc_buckets, self.pad_id)
    return {"q_ids": q_ids, "q_mask": q_mask, "d_ids": d_ids, "d_mask": d_mask,
            "doc_index": doc_index, "relevant": relevant,
            "weights": batches_lib.row_weights(len(chosen), b)}
