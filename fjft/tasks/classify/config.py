"""The default fields of a classification run; its experiment files start from these."""

from __future__ import annotations

import ml_collections

from fjft.config.bounds import (FRACTION, NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT,
                                PROBABILITY, Range, SEED)
from fjft.config.defaults import add_mesh, add_optim, add_peft, add_train, new_config

# The ranges of this task's own fields (fjft.config.bounds; the shared ones are in defaults).
BOUNDS = {
    "model.hidden_dropout": PROBABILITY,
    "model.attention_dropout": PROBABILITY,
    "model.classifier_dropout": PROBABILITY,
    "data.dev_fraction": FRACTION,
    "data.split_seed": SEED,
    "data.min_train_examples": NON_NEGATIVE_INT,
    "data.max_length": Range(2, integer=True),   # [CLS] and [SEP] at least
    "baseline.ngram_max": POSITIVE_INT,
    "baseline.C": POSITIVE,
}

def default_config() -> ml_collections.ConfigDict:
  """Every field an encoder classification run reads, with the recommended defaults.

  Low learning rate with linear warm-up and decay, weight decay off biases and norms,
  gradient clipping and early stopping on the dev metric: the usual recipe for
  fine-tuning a pretrained encoder without wrecking what it learned.
  """
  c = new_config("classify")

  c.model = ml_collections.ConfigDict()
  c.model.name = "all-minilm-l6-v2"   # a registered name, an HF folder or an HF hub id
  c.model.hidden_dropout = 0.1
  c.model.attention_dropout = 0.1
  c.model.classifier_dropout = 0.1
  # "pooler": [CLS] through BERT's pooler, as HF's *ForSequenceClassification (exports to it);
  # "mean": the mean of the real tokens, as sentence-transformers models learnt to pool
  c.model.pooling = "pooler"
  c.model.compute_dtype = "float32"   # "bfloat16" on GPU/TPU; params stay float32
  c.model.attention_impl = ""         # "" lets JAX choose; "cudnn" on GPU

  c.data = ml_collections.ConfigDict()
  c.data.path = ""
  c.data.text_column = "text"
  c.data.label_column = "label"
  c.data.on_bad_row = "error"         # or "skip": skipped rows are counted in the data report
  c.data.dev_fraction = 0.1           # carved from train when there is no dev file
  c.data.split_seed = 0
  c.data.lowercase = False
  c.data.dedup = True
  c.data.min_train_examples = 500
  c.data.max_length = 128
  c.data.buckets = (16, 32, 64, 128)  # padded sequence lengths: one compile per bucket

  add_train(c, steps=1000, batch_size=32, eval_every=200, eval_batch_size=128,
            metric="accuracy", patience=5, log_every=20, checkpoint_every=200)
  add_optim(c, lr=5e-5, schedule="linear", warmup_fraction=0.06, weight_decay=0.01, b2=0.999)

  c.baseline = ml_collections.ConfigDict()
  c.baseline.ngram_max = 2            # TF-IDF word n-grams 1..ngram_max
  c.baseline.C = 10.0                 # inverse regularisation of the logistic regression

  add_peft(c)
  add_mesh(c, types="", labels="")
  return c
