"""SST-2 sentiment with all-MiniLM-L6-v2.

  python -m fjft.train --config=experiments/sentiment_sst2.py --workdir=runs            # CPU recipe
  python -m fjft.train --config=experiments/sentiment_sst2.py:recipe=full --workdir=runs

Data: ../shared/data/sst2 (train.tsv trains, dev.tsv selects, test.tsv = GLUE dev is `test`).
Reached (2 CPU cores, cpu recipe): test accuracy 0.8830 vs 0.8188 for TF-IDF + logistic
regression, best dev 0.9357 at step 1500; 22.0 min wall on the 2 cores shared with test runs
(17.8 min alone, measured with the slower train step before the 16-bit dropout change).
On 80 reviews from other domains (experiments/data/sentiment_other_domains) that model scores
0.900 accuracy, against 0.775 for TF-IDF + logistic regression trained on the same SST-2 data.
Full recipe (12000 steps, about 6 epochs of the phrases): test accuracy 0.8933, best dev
0.9480 at step 10000 (dev 0.9076, 0.9286, 0.9379, 0.9404, 0.9453, 0.9446, 0.9464, 0.9458,
0.9444, 0.9480, 0.9459, 0.9458 at steps 1000-12000), short of the 0.90 aimed at. It ran in
pieces over several sessions on the 2 CPU cores, niced and shared with other work, so it has
no wall time to quote. Its first 6000 steps as a recipe of their own reached test 0.8945:
past about 5000 steps the phrase-level dev split (from GLUE train) keeps rising while the
sentence-level test does not, so dev no longer tells the better checkpoint for test.
"""

from fjft import config as config_lib
from fjft import sweeps
from fjft.defaults import classify_config

RECIPES = {
    # measured: 17.8 min wall on the 2-core machine (see the docstring)
    "cpu": dict(steps=1500, batch_size=32, eval_every=500),
    # 8x the cpu recipe: about 6 epochs of the 60k training phrases; reached test 0.8933
    # (6000 steps reached 0.8945: the phrase-level dev stops telling test's best checkpoint)
    "full": dict(steps=12000, batch_size=32, eval_every=1000),
}


def get_config(arg=None):
  a = config_lib.parse_arg(arg, {"recipe": "cpu", "lr": 1e-4})
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


def sweep():
  """Learning rate x warm-up around the recipe (6 runs; the cpu recipe takes ~1.5 h on 2 cores):

  python -m fjft.sweep --config=experiments/sentiment_sst2.py --workdir=runs
  """
  return sweeps.product({"optim.lr": [5e-5, 1e-4, 2e-4]},
                        {"optim.warmup_fraction": [0.0, 0.06]})
