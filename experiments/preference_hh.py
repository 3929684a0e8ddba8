"""Preference tuning: SmolLM2-135M-Instruct tuned with DPO on Anthropic HH's harmless pairs.

  python -m fjft.train --config=experiments/preference_hh.py --workdir=runs          # CPU, LoRA
  python -m fjft.train --config=experiments/preference_hh.py:recipe=full --workdir=runs

Data: ../shared/data/hh_rlhf_harmless/harmless-base-test.jsonl.gz (2,312 pairs, gzipped;
each row two whole dialogues that share every turn but the last reply; 5 whose earlier
turns differ are skipped and counted). A hashed 10% is `test`, a hashed 5% of the rest
`dev`; prompts longer than fits keep their end. Baselines beside the result: the starting
model's own preference (the reply it gives the higher log-prob), a TF-IDF + logistic
regression preference model trained on the same train pairs, and "the shorter reply wins".

Recipes:
  cpu   LoRA rank 16 on every attention and MLP projection, the base with adapters off as
        the reference (no second copy); 64 tokens a sequence (the prompt's end, the replies'
        start: the pairs differ in their replies' first words), 16 pairs a step, one epoch.
  full  every weight, the starting model's log-probs precomputed once as the reference;
        256 tokens, 16 pairs a step, 2 epochs: a GPU recipe.

Reached (cpu recipe, 2 CPU cores alone, 20.7 min, peak RSS 8.1 GB): test preference accuracy
0.6623 vs the starting model's 0.5584, TF-IDF 0.6407 and shorter-wins 0.5671 (dev 0.6058 vs
0.5096, 0.5577, 0.5000). Details: docs/results.md#preference-tuning.
"""

from fjft.config import experiment as config_lib
from fjft.errors import ConfigError
from fjft.tasks.preference.config import default_config


def get_config(arg=None):
  a = config_lib.parse_arg(arg, {"recipe": "cpu", "steps": 0, "lr": 0.0, "beta": 0.1})
  if a.recipe not in ("cpu", "full"):
    raise ConfigError(f"config arg recipe must be 'cpu' or 'full' (got {a.recipe!r})")
  c = default_config()
  c.name = "preference-hh"
  c.model.name = "smollm2-135m-instruct"
  c.data.path = "../shared/data/hh_rlhf_harmless/harmless-base-test.jsonl.gz"
  c.data.on_bad_row = "skip"     # 5 pairs whose earlier turns differ
  c.data.dev_fraction = 0.05
  c.data.test_fraction = 0.1
  c.loss.kind = "dpo"
  c.loss.beta = a.beta
  c.train.log_every = 5
  c.train.patience = 3
  if a.recipe == "cpu":
    # The pairs' difference is in their replies' first words (a TF-IDF model of the first 8
    # words of each reply scores as well as one of the whole replies): 64 tokens keep the
    # prompt's last 32 and each reply's first 32 or more, and buy an epoch in 20 minutes.
    c.data.max_length = 64
    c.peft.method = "lora"
    c.peft.rank = 16
    c.peft.alpha = 32.0
    c.train.batch_size = 16
    c.train.steps = a.steps or 120
    c.train.eval_every = 20
    c.train.checkpoint_every = 20
    c.optim.lr = a.lr or 2e-4
  else:
    c.data.max_length = 256
    c.train.batch_size = 16
    c.train.steps = a.steps or 250
    c.train.eval_every = 50
    c.train.checkpoint_every = 50
    c.optim.lr = a.lr or 1e-6
  return c
