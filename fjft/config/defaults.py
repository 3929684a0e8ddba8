"""The config fields every task shares (train, optim, peft, mesh); each task's own defaults
start from these (fjft/tasks/<task>/config.py), and experiment files start from a task's."""

from __future__ import annotations

import ml_collections

from fjft.config.bounds import (DECAY, NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT,
                                PROBABILITY, SEED, UNIT, Range)
from fjft.errors import ConfigError

# The ranges of the fields below (fjft.config.bounds), checked when a config loads.
BOUNDS = {
    "seed": SEED,
    "train.steps": POSITIVE_INT,
    "train.batch_size": POSITIVE_INT,
    "train.grad_accum": POSITIVE_INT,
    "train.eval_every": POSITIVE_INT,
    "train.eval_batch_size": POSITIVE_INT,
    "train.patience": NON_NEGATIVE_INT,
    "train.log_every": POSITIVE_INT,
    "train.checkpoint_every": POSITIVE_INT,
    "train.keep_checkpoints": POSITIVE_INT,
    "optim.lr": POSITIVE,
    "optim.warmup_fraction": UNIT,
    "optim.weight_decay": NON_NEGATIVE,
    "optim.clip_norm": NON_NEGATIVE,
    "optim.b1": DECAY,
    "optim.b2": DECAY,
    "optim.eps": POSITIVE,
    "peft.rank": POSITIVE_INT,
    "peft.alpha": POSITIVE,
    "peft.dropout": PROBABILITY,
    "mesh.data": Range(1, integer=True, also=(-1,)),
    "mesh.fsdp": Range(1, integer=True, also=(-1,)),
    "mesh.tensor": Range(1, integer=True, also=(-1,)),
}


def new_config(task: str) -> ml_collections.ConfigDict:
  """The top level of a run's config: its task, a name and the seed."""
  c = ml_collections.ConfigDict()
  c.name = task
  c.seed = 0
  c.task = task
  return c


def add_train(c: ml_collections.ConfigDict, *, steps: int, batch_size: int, eval_every: int,
              eval_batch_size: int, metric: str, patience: int, log_every: int,
              checkpoint_every: int) -> None:
  """The loop's fields: length, batches, evaluation, early stopping, logs and checkpoints."""
  c.train = ml_collections.ConfigDict()
  c.train.steps = steps
  c.train.batch_size = batch_size
  c.train.grad_accum = 1              # micro-batches per step; the batch is split, not grown
  c.train.eval_every = eval_every
  c.train.eval_batch_size = eval_batch_size
  c.train.metric = metric             # dev metric for early stopping and model selection
  c.train.patience = patience         # evaluations without improvement before stopping; 0 = never
  c.train.log_every = log_every
  c.train.checkpoint_every = checkpoint_every
  c.train.keep_checkpoints = 2
  c.train.progress = True


def add_optim(c: ml_collections.ConfigDict, *, lr: float, schedule: str, warmup_fraction: float,
              weight_decay: float, b2: float) -> None:
  """AdamW with warm-up then decay, clipped gradients (fjft.training.optim)."""
  c.optim = ml_collections.ConfigDict()
  c.optim.lr = lr
  c.optim.schedule = schedule         # warm-up then "linear" or "cosine" decay, or "constant"
  c.optim.warmup_fraction = warmup_fraction
  c.optim.weight_decay = weight_decay  # not on biases and norms
  c.optim.clip_norm = 1.0
  c.optim.b1 = 0.9
  c.optim.b2 = b2
  c.optim.eps = 1e-8
  c.optim.freeze = ""                 # regex over parameter paths: matches do not train
  c.optim.lr_groups = ""              # "<regex>=<lr factor>;...", e.g. "^classifier\\.=10"
  c.optim.state_dtype = "float32"     # AdamW's moments between steps: or "bfloat16" (half the
  #                                     memory, stochastically rounded: fjft.training.low_precision)


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
