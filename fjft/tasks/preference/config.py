"""The default fields of a preference-tuning run (DPO, IPO, SimPO, ORPO); its experiment
files start from these."""

from __future__ import annotations

import ml_collections

from fjft.config.bounds import FRACTION, NON_NEGATIVE_INT, POSITIVE_INT, Range, SEED
from fjft.config.defaults import add_mesh, add_optim, add_peft, add_train, new_config

LOSS_KINDS = ("dpo", "ipo", "simpo", "orpo")
# "auto": adapters_off for a LoRA run, precompute otherwise.
REFERENCES = ("auto", "adapters_off", "precompute", "frozen_copy")

BOUNDS = {
    "data.max_length": Range(4, integer=True),
    "data.dev_fraction": FRACTION,
    "data.test_fraction": FRACTION,
    "data.split_seed": SEED,
    "loss.beta": Range(0.0, low_open=True),
    "loss.label_smoothing": Range(0.0, 0.5, high_open=True),
    "loss.simpo_gamma": Range(0.0),
    "eval.generate": NON_NEGATIVE_INT,
    "eval.max_new_tokens": POSITIVE_INT,
    "eval.batch_size": POSITIVE_INT,
}


def default_config() -> ml_collections.ConfigDict:
  """Every field a preference-tuning run reads, with defaults.

  Baselines: the starting model's own preference (the pair's reply it gives the higher
  log-prob), a TF-IDF + logistic-regression preference model trained on the same train
  pairs, and "the shorter reply wins". Dev preference accuracy selects the checkpoint.
  """
  c = new_config("preference")

  c.model = ml_collections.ConfigDict()
  c.model.name = "smollm2-135m-instruct"  # a registered LM, an HF folder, a .gguf file
  c.model.compute_dtype = "float32"
  c.model.attention_impl = ""
  c.model.scan_layers = True
  c.model.remat = "none"

  c.data = ml_collections.ConfigDict()
  c.data.path = ""
  # Each row: prompt / chosen / rejected (texts, or chat message lists as in Hugging Face
  # preference data sets), or only chosen / rejected as whole dialogues sharing every turn
  # but the last reply (Anthropic HH's "\n\nHuman: ... \n\nAssistant: ..." or message lists).
  c.data.prompt_column = "prompt"
  c.data.chosen_column = "chosen"
  c.data.rejected_column = "rejected"
  c.data.use_chat_template = True   # False: prompt text + reply + EOS (single-turn only)
  c.data.chat_template = ""         # a .jinja file instead of the model's template
  c.data.max_length = 256           # tokens per prompt + reply; longer pairs keep the
  #                                   prompt's end (and cut the replies' ends if need be)
  c.data.dev_fraction = 0.05
  c.data.test_fraction = 0.1        # a hashed split of the pairs
  c.data.split_seed = 0
  c.data.on_bad_row = "error"
  c.data.drop_duplicates = True     # the same prompt and replies again within or across splits

  c.loss = ml_collections.ConfigDict()
  c.loss.kind = "dpo"               # dpo (sigmoid), ipo, simpo or orpo
  c.loss.beta = 0.1                 # DPO/IPO temperature; SimPO's reward scale; ORPO's lambda
  c.loss.label_smoothing = 0.0      # conservative DPO / SimPO: the chance a label is flipped
  c.loss.simpo_gamma = 0.5          # SimPO's target reward margin
  c.loss.reference = "auto"         # adapters_off (LoRA: the base, no second copy),
  #                                   precompute (the starting model's log-probs, once) or
  #                                   frozen_copy (the starting weights kept beside)

  # Generation metrics (bleu, chrf, rougeL) of greedy replies to the first `eval.generate`
  # prompts of dev (each evaluation) and test, against their chosen replies.
  c.eval = ml_collections.ConfigDict()
  c.eval.generate = 0                 # 0: preference metrics only
  c.eval.metrics = ""
  c.eval.max_new_tokens = 64
  c.eval.batch_size = 16

  add_train(c, steps=200, batch_size=8, eval_every=50, eval_batch_size=8, metric="accuracy",
            patience=3, log_every=10, checkpoint_every=50)

  add_optim(c, lr=5e-6, schedule="cosine", warmup_fraction=0.1, weight_decay=0.0, b2=0.999)
  add_peft(c)
  add_mesh(c, kv_heads="tensor", layers="")
  return c
