"""SST-2 sentiment with all-MiniLM-L6-v2.

  python -m fjft.train --config=experiments/sentiment_sst2.py --workdir=runs            # CPU recipe
  python -m fjft.train --config=experiments/sentiment_sst2.py:recipe=full --workdir=runs

Data: ../shared/data/sst2 (train.tsv trains, dev.tsv selects, test.tsv = GLUE dev is `test`).
Reached: see README (Results).
"""

from fjft import config as config_lib
from fjft.defaults import classify_config

RECIPES = {
    # ~20 minutes on 2 CPU cores
    "cpu": dict(steps=1500, batch_size=32, eval_every=250),
    # several epochs; hours on CPU, minutes on a GPU
    "full": dict(steps=12000, batch_size=32, eval_every=1000),
}


def get_config(arg=None):
  a = config_lib.parse_arg(arg, {"recipe": "cpu", "lr": 5e-5})
  r = RECIPES[a.recipe]
  c = classify_config()
  c.name = f"sst2-{a.recipe}"
  c.data.path = "../shared/data/sst2"
  c.data.text_column = "sentence"
  c.data.label_column = "label"
  c.data.max_length = 64
  c.data.buckets = (16, 32, 64)
  c.train.steps = r["steps"]
  c.train.batch_size = r["batch_size"]
  c.train.eval_every = r["eval_every"]
  c.train.checkpoint_every = r["eval_every"]
  c.train.patience = 4
  c.optim.lr = a.lr
  return c
