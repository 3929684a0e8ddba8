"""Spanish -> English translation: SmolLM2-135M-Instruct fine-tuned on Tatoeba pairs.

  python -m fjft.train --config=experiments/translate_es_en.py --workdir=runs

Data: ../shared/data/tatoeba_eng_spa/test.{spa,eng} (16,583 aligned lines). A hashed 2% of
the pairs (about 330) is `test` and never trains; a hashed 1% of the rest is `dev`. Each
pair is a one-turn chat: the user asks for the translation, the assistant's reply (the
English line) trains. BLEU and chrF are scored on the first 100 dev and test pairs, greedy,
for the fine-tuned model and for the same model zero-shot (the baseline).

Reached (2 CPU cores, alone): test BLEU 20.85 and chrF 37.17 vs 3.43 and 21.08 zero-shot
(dev BLEU 22.07 vs 4.39), test perplexity 3.48 vs 7.72; 26.0 min wall. On the 30 sentences
of experiments/data/translation_other_domains: BLEU 48.8 / chrF 61.7 vs 14.0 / 33.4 zero-shot.

LoRA (`--config=experiments/translate_es_en.py:peft=lora`: rank 8, alpha 16, dropout 0.05
on every attention and MLP projection, lr 1e-3, 60 steps) trains 2.44M of 137.0M parameters
(1.78%) and reached test BLEU 18.23 and chrF 33.94 (dev BLEU 17.89), test perplexity 3.82:
85% of the full fine-tune's BLEU gain over zero-shot (+14.80 vs +17.42). 37.0 min wall,
8.3 GB peak RSS, sharing the 2 cores with other runs and tests (not a timing to compare).
"""

from fjft.config import experiment as config_lib
from fjft.config.defaults import set_peft_arg
from fjft.tasks.lm.config import default_config


def get_config(arg=None):
  a = config_lib.parse_arg(arg, {"steps": 60, "lr": 0.0, "peft": ""})
  c = default_config()
  c.name = "translate-es-en"
  c.model.name = "smollm2-135m-instruct"
  c.data.path = "../shared/data/tatoeba_eng_spa/test"
  c.data.format = "parallel"
  c.data.source_suffix = ".spa"
  c.data.target_suffix = ".eng"
  c.data.prompt_template = "Translate this Spanish sentence into English:\n{source}"
  c.data.max_length = 256
  c.data.on_bad_row = "skip"   # a few pairs are whole paragraphs, longer than a row: counted
  c.data.dev_fraction = 0.01
  c.data.test_fraction = 0.02
  c.train.steps = a.steps
  c.train.batch_size = 8
  c.train.eval_every = 30
  c.train.checkpoint_every = 30
  c.train.log_every = 5
  c.eval.generate = 100
  c.eval.metrics = "bleu,chrf"
  c.eval.max_new_tokens = 48
  set_peft_arg(c, a.peft, a.lr, full_lr=1e-4, lora_lr=1e-3)
  return c
