"""The default fields of a classification experiment; experiment files start from these."""

from __future__ import annotations

import ml_collections

from fjft.errors import ConfigError


def classify_config() -> ml_collections.ConfigDict:
  """Every field an encoder classification run reads, with the recommended defaults.

  Low learning rate with linear warm-up and decay, weight decay off biases and norms,
  gradient clipping and early stopping on the dev metric: the usual recipe for
  fine-tuning a pretrained encoder without wrecking what it learned.
  """
  c = ml_collections.ConfigDict()
  c.name = "classify"
  c.seed = 0
  c.task = "classify"

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

  c.train = ml_collections.ConfigDict()
  c.train.steps = 1000
  c.train.batch_size = 32
  c.train.grad_accum = 1              # micro-batches per step; the batch is split, not grown
  c.train.eval_every = 200
  c.train.eval_batch_size = 128
  c.train.metric = "accuracy"         # dev metric for early stopping and model selection
  c.train.patience = 5                # evaluations without improvement before stopping; 0 = never
  c.train.log_every = 20
  c.train.checkpoint_every = 200
  c.train.keep_checkpoints = 2
  c.train.progress = True

  c.optim = ml_collections.ConfigDict()
  c.optim.lr = 5e-5
  c.optim.schedule = "linear"         # warm-up then "linear" or "cosine" decay, or "constant"
  c.optim.warmup_fraction = 0.06
  c.optim.weight_decay = 0.01
  c.optim.clip_norm = 1.0
  c.optim.b1 = 0.9
  c.optim.b2 = 0.999
  c.optim.eps = 1e-8
  c.optim.freeze = ""                 # regex over parameter paths: matches do not train
  c.optim.lr_groups = ""              # "<regex>=<lr factor>;...", e.g. "^classifier\\.=10"

  c.baseline = ml_collections.ConfigDict()
  c.baseline.ngram_max = 2            # TF-IDF word n-grams 1..ngram_max
  c.baseline.C = 10.0                 # inverse regularisation of the logistic regression

  add_peft(c)
  add_mesh(c, types="", labels="")
  return c


def lm_config() -> ml_collections.ConfigDict:
  """Every field a causal-LM fine-tuning run reads (fjft.lm_runner), with defaults.

  The pretrained model zero-shot is the baseline; dev perplexity selects the checkpoint.
  """
  c = ml_collections.ConfigDict()
  c.name = "lm"
  c.seed = 0
  c.task = "lm"

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
  c.data.train_on_prompt = False
  c.data.max_length = 256             # tokens per row
  c.data.pack = True                  # several examples per row (attention kept apart)
  c.data.dev_fraction = 0.05
  c.data.test_fraction = 0.1          # "text": the tail of the data; else a hashed split
  c.data.split_seed = 0
  c.data.on_bad_row = "error"

  c.train = ml_collections.ConfigDict()
  c.train.steps = 100
  c.train.batch_size = 8
  c.train.grad_accum = 1
  c.train.eval_every = 50
  c.train.eval_batch_size = 8
  c.train.metric = "perplexity"       # lower is better
  c.train.patience = 3
  c.train.log_every = 10
  c.train.checkpoint_every = 50
  c.train.keep_checkpoints = 2
  c.train.progress = True

  # Generation metrics on the first `eval.generate` examples of dev (each evaluation) and
  # test (once), greedy, for the fine-tuned and the zero-shot model alike.
  c.eval = ml_collections.ConfigDict()
  c.eval.generate = 0                 # 0: loss and perplexity only
  c.eval.metrics = ""                 # comma-separated: bleu, chrf, rougeL
  c.eval.max_new_tokens = 64
  c.eval.batch_size = 16

  c.optim = ml_collections.ConfigDict()
  c.optim.lr = 5e-5
  c.optim.schedule = "cosine"
  c.optim.warmup_fraction = 0.1
  c.optim.weight_decay = 0.0
  c.optim.clip_norm = 1.0
  c.optim.b1 = 0.9
  c.optim.b2 = 0.95
  c.optim.eps = 1e-8
  c.optim.freeze = ""                 # regex over parameter paths: matches do not train
  c.optim.lr_groups = ""              # "<regex>=<lr factor>;...", e.g. "^classifier\\.=10"

  add_peft(c)
  add_mesh(c, kv_heads="tensor", layers="")
  return c


def retrieval_config() -> ml_collections.ConfigDict:
  """Every field a search fine-tuning run reads (fjft.retrieval_runner), with defaults.

  Contrastive training with in-batch negatives at temperature 0.05 (the scale 20 of
  sentence-transformers' MultipleNegativesRankingLoss), a low learning rate with warm-up,
  and early stopping on dev nDCG@10.
  """
  c = ml_collections.ConfigDict()
  c.name = "retrieval"
  c.seed = 0
  c.task = "retrieval"

  c.model = ml_collections.ConfigDict()
  c.model.name = "all-minilm-l6-v2"
  c.model.pooling = "auto"            # "mean" or "cls"; auto: the model's sentence-transformers config
  c.model.normalize = "auto"          # "yes" or "no"; auto: as the model's config (else yes)
  c.model.hidden_dropout = 0.1
  c.model.attention_dropout = 0.1
  c.model.compute_dtype = "float32"
  c.model.attention_impl = ""

  c.data = ml_collections.ConfigDict()
  c.data.path = ""
  c.data.format = "auto"              # cranfield | beir | pairs (see fjft/data/ir_data.py)
  c.data.query_column = "query"       # pairs files
  c.data.positive_column = "positive"
  c.data.negative_column = "negative"  # optional: a text or a list of texts
  c.data.on_bad_row = "error"         # or "skip": skipped entries are counted in the report
  c.data.test_every = 0               # >0: queries numbered N, 2N, ... are the test split
  c.data.test_fraction = 0.2          # else this hashed fraction (when the files name none)
  c.data.dev_fraction = 0.2           # of the remaining queries, when the files name no dev
  c.data.split_seed = 0
  c.data.min_gain = 1                 # judgements with at least this gain make training pairs
  c.data.min_train_examples = 500     # warn under this many training pairs
  c.data.query_max_length = 64
  c.data.query_buckets = (16, 32, 64)
  c.data.doc_max_length = 256
  c.data.doc_buckets = (64, 128, 256)
  # Documents are cut to this many tokens in training only (0: doc_max_length): the start
  # of a document carries most of its topic, and a step's cost grows with its length.
  c.data.train_doc_max_length = 0

  c.loss = ml_collections.ConfigDict()
  c.loss.temperature = 0.05
  c.loss.symmetric = False            # also documents -> queries, averaged
  c.loss.hard_negatives = 0           # per pair, from the data's negatives then BM25's top hits
  c.loss.mine_depth = 30              # BM25 hits (not judged relevant) to draw them from

  c.train = ml_collections.ConfigDict()
  c.train.steps = 200
  c.train.batch_size = 32             # queries per step; each brings 1 + hard_negatives docs
  c.train.grad_accum = 1
  c.train.eval_every = 50
  c.train.eval_batch_size = 64
  c.train.metric = "ndcg@10"
  c.train.patience = 3
  c.train.log_every = 10
  c.train.checkpoint_every = 50
  c.train.keep_checkpoints = 2
  c.train.progress = True

  c.eval = ml_collections.ConfigDict()
  c.eval.fusion_k = 60                # reciprocal rank fusion constant of `hybrid`

  c.optim = ml_collections.ConfigDict()
  c.optim.lr = 2e-5
  c.optim.schedule = "linear"
  c.optim.warmup_fraction = 0.1
  c.optim.weight_decay = 0.01
  c.optim.clip_norm = 1.0
  c.optim.b1 = 0.9
  c.optim.b2 = 0.999
  c.optim.eps = 1e-8
  c.optim.freeze = ""                 # regex over parameter paths: matches do not train
  c.optim.lr_groups = ""              # "<regex>=<lr factor>;...", e.g. "^classifier\\.=10"

  c.baseline = ml_collections.ConfigDict()
  c.baseline.k1 = 1.2                 # BM25
  c.baseline.b = 0.75

  add_peft(c)
  add_mesh(c, types="", labels="")
  return c


def add_peft(c: ml_collections.ConfigDict) -> None:
  """Parameter-efficient fine-tuning (fjft.adapters): off unless peft.method is set."""
  c.peft = ml_collections.ConfigDict()
  c.peft.method = ""                  # "" (full fine-tuning) or "lora"
  c.peft.rank = 8
  c.peft.alpha = 16.0                 # the adapter's output is scaled by alpha / rank
  c.peft.dropout = 0.05               # on each adapter's input, in training
  # regex over Linear module paths ("layers.3.self_attn.q_proj"): the default wraps every
  # attention and MLP projection of every family
  c.peft.target = r"(^|\.)layers\."
  c.peft.train_also = ""              # regex of other params that train (e.g. "norm")
  c.peft.quantize = ""                # the frozen base's Linear kernels: "", "int8" or "nf4"
  c.peft.init_from = ""               # a PEFT adapter folder to start the adapters from


def set_peft_arg(c: ml_collections.ConfigDict, peft: str, lr: float, full_lr: float,
                 lora_lr: float) -> None:
  """An experiment's `peft` and `lr` config args: peft="" trains every parameter at
  full_lr, peft="lora" LoRA adapters at lora_lr (they start at zero and are few: a larger
  step); a non-zero `lr` arg overrides either."""
  if peft not in ("", "lora"):
    raise ConfigError(f"config arg peft must be '' (full fine-tuning) or 'lora' (got {peft!r})")
  c.peft.method = peft
  c.optim.lr = lr or (lora_lr if peft == "lora" else full_lr)


def add_mesh(c: ml_collections.ConfigDict, **model_rules: str) -> None:
  """The mesh and the sharding rules every run has, plus a model's own logical axes."""
  # Mesh axes: -1 takes the devices left over. One CPU is a mesh of one.
  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1
  c.mesh.fsdp = 1
  c.mesh.tensor = 1
  # Logical parameter/activation axis -> mesh axes ("" = replicated).
  c.sharding_rules = ml_collections.ConfigDict(dict(
      batch="data,fsdp", vocab="tensor", embed="fsdp", heads="tensor", mlp="tensor",
      position="", **model_rules))
