"""Customer-support replies: SmolLM2-135M-Instruct fine-tuned on Bitext request -> response.

  python -m fjft.train --config=experiments/support_bitext.py --workdir=runs

Data: ../shared/data/bitext_support/train.csv (4,514 rows; `instruction` is the customer's
request, `response` the agent's reply). A hashed 3% (about 135 rows) is `test` and never
trains; a hashed 2% of the rest is `dev`. Each row is a one-turn chat whose assistant reply
trains. ROUGE-L is scored on the first 50 dev and test requests (up to 128 new tokens,
greedy) for the fine-tuned model and for the same model zero-shot (the baseline).

Reached (2 CPU cores, alone, FJFT_MALLOC=jemalloc): test ROUGE-L 32.96 vs 14.82 zero-shot (dev
33.23 vs 16.16), test perplexity 2.91 vs 6.78; 24.4 min wall, the command from
start to summary, of which the four generation passes (baseline dev and test, dev at step 30,
test) take about 4 min each.
Under the default glibc malloc the same run took 19.1 min (test ROUGE-L 32.96).

LoRA (`:peft=lora`: rank 8 on every attention and MLP projection, lr 1e-3; 2.44M of 137.0M
parameters train, 1.78%): test ROUGE-L 31.22 vs 14.82 zero-shot (dev 35.30 vs 16.16), test
perplexity 3.27 vs 6.78; 90% of the full fine-tune's ROUGE-L gain. 31.4 min wall, sharing the
2 cores with other runs (not a timing to compare).
"""

from fjft.config import experiment as config_lib
from fjft.config.defaults import set_peft_arg
from fjft.tasks.lm.config import default_config


def get_config(arg=None):
  a = config_lib.parse_arg(arg, {"steps": 30, "lr": 0.0, "peft": ""})
  c = default_config()
  c.name = "support-bitext"
  c.model.name = "smollm2-135m-instruct"
  c.data.path = "../shared/data/bitext_support/train.csv"
  c.data.format = "prompt_response"
  c.data.prompt_column = "instruction"
  c.data.response_column = "response"
  c.data.max_length = 512
  c.data.on_bad_row = "skip"   # a reply or two run past 512 tokens: skipped and counted
  c.data.dev_fraction = 0.02
  c.data.test_fraction = 0.03
  c.train.steps = a.steps
  c.train.batch_size = 4
  # one evaluation, at the end: each generates 50 replies, about 4 min on 2 cores
  c.train.eval_every = 30
  c.train.checkpoint_every = 30
  c.train.log_every = 5
  c.eval.generate = 50
  c.eval.metrics = "rougeL"
  c.eval.max_new_tokens = 128
  set_peft_arg(c, a.peft, a.lr, full_lr=1e-4, lora_lr=1e-3)
  return c
