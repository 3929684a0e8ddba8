"""The default fields of a search fine-tuning run; its experiment files start from these."""

from __future__ import annotations

import ml_collections

from fjft.config.bounds import (FRACTION, NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT,
                                PROBABILITY, UNIT, SEED)
from fjft.config.defaults import add_mesh, add_optim, add_peft, add_train, new_config

# The ranges of this task's own fields (fjft.config.bounds; the shared ones are in defaults).
BOUNDS = {
    "model.hidden_dropout": PROBABILITY,
    "model.attention_dropout": PROBABILITY,
    "data.test_every": NON_NEGATIVE_INT,
    "data.test_fraction": FRACTION,
    "data.dev_fraction": FRACTION,
    "data.split_seed": SEED,
    "data.min_gain": POSITIVE_INT,      # a gain of 0 is judged not relevant
    "data.min_train_examples": NON_NEGATIVE_INT,
    "data.query_max_length": POSITIVE_INT,
    "data.doc_max_length": POSITIVE_INT,
    "data.train_doc_max_length": NON_NEGATIVE_INT,   # 0: doc_max_length
    "loss.temperature": POSITIVE,
    "loss.hard_negatives": NON_NEGATIVE_INT,
    "loss.mine_depth": POSITIVE_INT,
    "eval.fusion_k": POSITIVE,
    "baseline.k1": NON_NEGATIVE,
    "baseline.b": UNIT,
}

def default_config() -> ml_collections.ConfigDict:
  """Every field a search fine-tuning run reads, with defaults.

  Contrastive training with in-batch negatives at temperature 0.05 (the scale 20 of
  sentence-transformers' MultipleNegativesRankingLoss), a low learning rate with warm-up,
  and early stopping on dev nDCG@10.
  """
  c = new_config("retrieval")

  c.model = ml_collections.ConfigDict()
  c.model.name = "all-minilm-l6-v2"
  c.model.pooling = "auto"            # "mean" or "cls"; auto: the model's sentence-transformers config
  c.model.normalize = "auto"          # "yes" or "no"; auto: as the model's config (else yes)
  c.model.hidden_dropout = 0.1
  c.model.attention_dropout = 0.1
  c.model.compute_dtype = "float32"
  c.model.attention_impl = ""

  c.data = ml_collections.ConfigDict()
  c.data.path = ""
  c.data.format = "auto"              # cranfield | beir | pairs (see fjft/tasks/retrieval/data.py)
  c.data.query_column = "query"       # pairs files
  c.data.positive_column = "positive"
  c.data.negative_column = "negative"  # optional: a text or a list of texts
  c.data.on_bad_row = "error"         # or "skip": skipped entries are counted in the report
  c.data.test_every = 0               # >0: queries numbered N, 2N, ... are the test split
  c.data.test_fraction = 0.2          # else this hashed fraction (when the files name none)
  c.data.dev_fraction = 0.2           # of the remaining queries, when the files name no dev
  c.data.split_seed = 0
  # a query text repeated within train or dev (its judgements join the first's), or in train
  # or dev and a later split, is dropped and counted in the data report; test is kept as it is
  c.data.drop_duplicates = True
  c.data.min_gain = 1                 # judgements with at least this gain make training pairs
  c.data.min_train_examples = 500     # warn under this many training pairs
  c.data.query_max_length = 64
  c.data.query_buckets = (16, 32, 64)
  c.data.doc_max_length = 256
  c.data.doc_buckets = (64, 128, 256)
  # Documents are cut to this many tokens in training only (0: doc_max_length): the start
  # of a document carries most of its topic, and a step's cost grows with its length.
  c.data.train_doc_max_length = 0

  c.loss = ml_collections.ConfigDict()
  c.loss.temperature = 0.05
  c.loss.symmetric = False            # also documents -> queries, averaged
  c.loss.hard_negatives = 0           # per pair, from the data's negatives then BM25's top hits
  c.loss.mine_depth = 30              # BM25 hits (not judged relevant) to draw them from

  # train.batch_size: queries per step; each brings 1 + loss.hard_negatives documents
  add_train(c, steps=200, batch_size=32, eval_every=50, eval_batch_size=64, metric="ndcg@10",
            patience=3, log_every=10, checkpoint_every=50)

  c.eval = ml_collections.ConfigDict()
  c.eval.fusion_k = 60                # reciprocal rank fusion constant of `hybrid`

  add_optim(c, lr=2e-5, schedule="linear", warmup_fraction=0.1, weight_decay=0.01, b2=0.999)

  c.baseline = ml_collections.ConfigDict()
  c.baseline.k1 = 1.2                 # BM25
  c.baseline.b = 0.75

  add_peft(c)
  add_mesh(c, types="", labels="")
  return c
