"""The default fields of a causal-LM fine-tuning run; its experiment files start from these."""

from __future__ import annotations

import ml_collections

from fjft.config.bounds import FRACTION, NON_NEGATIVE_INT, POSITIVE_INT, Range, SEED
from fjft.config.defaults import add_mesh, add_optim, add_peft, add_train, new_config

# The ranges of this task's own fields (fjft.config.bounds; the shared ones are in defaults).
BOUNDS = {
    "data.max_length": Range(2, integer=True),   # a token to predict from, one to predict
    "data.dev_fraction": FRACTION,
    "data.test_fraction": FRACTION,
    "data.split_seed": SEED,
    "eval.generate": NON_NEGATIVE_INT,
    "eval.max_new_tokens": POSITIVE_INT,
    "eval.batch_size": POSITIVE_INT,
}

def default_config() -> ml_collections.ConfigDict:
  """Every field a causal-LM fine-tuning run reads, with defaults.

  The pretrained model zero-shot is the baseline; dev perplexity selects the checkpoint.
  """
  c = new_config("lm")

  c.model = ml_collections.ConfigDict()
  c.model.name = "smollm2-135m-instruct"  # a registered LM, an HF folder, a .gguf file
  c.model.compute_dtype = "float32"       # "bfloat16" on GPU/TPU; params stay float32
  c.model.attention_impl = ""
  c.model.scan_layers = True              # one compiled layer, scanned: fast compiles
  c.model.remat = "none"                  # "full" or "dots_saveable" trade compute for memory

  c.data = ml_collections.ConfigDict()
  c.data.path = ""
  # "text": continued pretraining on a token stream cut into full rows; "prompt_response":
  # pairs, the response trains; "parallel": two aligned line files (translation), the target
  # trains; "chat": [{"role", "content"}, ...] lists, assistant turns train
  c.data.format = "text"
  c.data.text_column = "text"
  c.data.prompt_column = "prompt"
  c.data.response_column = "response"
  c.data.messages_column = "messages"
  c.data.source_suffix = ""           # "parallel": <path><source_suffix> and <path><target_suffix>,
  c.data.target_suffix = ""           # line i of one translating line i of the other
  c.data.prompt_template = "{source}"  # "parallel": the prompt made of a source line
  c.data.use_chat_template = True     # prompt_response / parallel rendered as a one-turn chat
  # a .jinja file to render chats with instead of the model's own template (a base model
  # has none); the run's tokenizer, and so its exports and generations, carry it
  c.data.chat_template = ""
  c.data.train_on_prompt = False
  c.data.max_length = 256             # tokens per row
  c.data.pack = True                  # several examples per row (attention kept apart)
  c.data.dev_fraction = 0.05
  c.data.test_fraction = 0.1          # "text": the tail of the data; else a hashed split
  c.data.split_seed = 0
  c.data.on_bad_row = "error"
  # identical examples within train and dev, and train/dev examples also in a later split
  # (dev, test), are dropped and counted in the data report; test is kept as it is
  c.data.drop_duplicates = True

  add_train(c, steps=100, batch_size=8, eval_every=50, eval_batch_size=8, metric="perplexity",
            patience=3, log_every=10, checkpoint_every=50)

  # Generation metrics on the first `eval.generate` examples of dev (each evaluation) and
  # test (once), greedy, for the fine-tuned and the zero-shot model alike.
  c.eval = ml_collections.ConfigDict()
  c.eval.generate = 0                 # 0: loss and perplexity only
  c.eval.metrics = ""                 # comma-separated: bleu, chrf, rougeL
  c.eval.max_new_tokens = 64
  c.eval.batch_size = 16

  add_optim(c, lr=5e-5, schedule="cosine", warmup_fraction=0.1, weight_decay=0.0, b2=0.95)

  add_peft(c)
  add_mesh(c, kv_heads="tensor", layers="")
  return c
