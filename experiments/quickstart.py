"""Quickstart: fine-tune all-MiniLM-L6-v2 on a small customer-support intent set, offline.

  python -m fjft.train --config=experiments/quickstart.py --workdir=runs

Data: experiments/data/quickstart (600 train / 150 test rows, 6 intents, written for fjft);
dev is carved from train. A few minutes on 2 CPU cores.
Reached (2 CPU cores, 2.8 min): test accuracy 0.953 vs 0.893 for TF-IDF + logistic regression.
"""

from fjft.config import experiment as config_lib
from fjft.sweeps import grid as sweeps
from fjft.tasks.classify.config import default_config


def get_config(arg=None):
  a = config_lib.parse_arg(arg, {"steps": 150, "lr": 1e-4})
  c = default_config()
  c.name = "quickstart"
  c.data.path = "experiments/data/quickstart"
  c.data.buckets = (32, 64)
  c.data.max_length = 64
  c.data.min_train_examples = 500
  c.train.steps = a.steps
  c.train.batch_size = 32
  c.train.eval_every = 25
  c.train.checkpoint_every = 25
  c.train.log_every = 5
  c.train.patience = 0
  c.optim.lr = a.lr
  c.optim.warmup_fraction = 0.1
  return c


def sweep():
  """4 short runs, learning rate x warm-up (6.1 minutes measured on 2 CPU cores):

  python -m fjft.sweep --config=experiments/quickstart.py --workdir=runs
  """
  return sweeps.product({"optim.lr": [1e-4, 3e-5]}, {"optim.warmup_fraction": [0.0, 0.1]},
                        {"train.steps": [50]})
