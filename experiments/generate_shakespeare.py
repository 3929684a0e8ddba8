"""Continued pretraining of SmolLM2-135M-Instruct on tiny Shakespeare: perplexity before and after.

  python -m fjft.train --config=experiments/generate_shakespeare.py --workdir=runs

Data: ../shared/data/tiny_shakespeare/input.txt, one token stream cut into rows of 256
tokens; its last 10% of lines is `test` and the 5% before that `dev`, so everything scored
comes after everything trained on. The baseline is the pretrained model zero-shot.

Reached (2 CPU cores, alone, FJFT_MALLOC=jemalloc): test perplexity 29.57 vs 43.83 zero-shot
(-32.5%), dev 32.68 vs 49.35 (-33.8%; 33.91 at step 30); 21.7 min wall, the command from
start to summary. The train step (8 x 256 tokens, float32) took about 14 s.
Perplexity here is over rows of 256 tokens, each starting without context, which is why
zero-shot is 43.8 rather than the 33.3 a longer context gives.

LoRA (`:peft=lora`: rank 8 on every attention and MLP projection, lr 1e-3; 2.44M of 137.0M
parameters train, 1.78%): test perplexity 30.19 vs 43.83 zero-shot (-31.1%; dev 33.56 vs
49.35), 96% of the full fine-tune's reduction. 42.0 min wall, sharing the 2 cores with other
runs and the test suite (not a timing to compare).

Earlier recipes and their results: docs/results.md.
"""

from fjft.config import experiment as config_lib
from fjft.config.defaults import set_peft_arg
from fjft.tasks.lm.config import default_config


def get_config(arg=None):
  a = config_lib.parse_arg(arg, {"steps": 60, "lr": 0.0, "peft": ""})
  c = default_config()
  c.name = "shakespeare"
  c.model.name = "smollm2-135m-instruct"
  c.data.path = "../shared/data/tiny_shakespeare/input.txt"
  c.data.format = "text"
  c.data.max_length = 256
  c.data.dev_fraction = 0.05
  c.data.test_fraction = 0.1
  c.train.steps = a.steps
  c.train.batch_size = 8
  c.train.eval_every = 30
  c.train.checkpoint_every = 30
  c.train.log_every = 5
  set_peft_arg(c, a.peft, a.lr, full_lr=2e-4, lora_lr=1e-3)
  return c
