"""Training-step throughput: fjft (JAX) vs Hugging Face transformers (PyTorch), same run.

  python benchmarks/train_step_cpu.py [--batch 32 --seq 64 --threads 2 --steps 20]

Both sides run the same model (all-MiniLM-L6-v2 + a 2-label head), the same batch of real
SST-2 sentences padded to the same length, float32, AdamW with clipping, dropout on, on
the same number of CPU threads. Prints examples/s of each and the ratio fjft / HF.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def parse():
  p = argparse.ArgumentParser()
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--seq", type=int, default=64)
  # torch's intra-op threads; XLA's CPU pool takes one thread per core (2 on the CI machine)
  p.add_argument("--threads", type=int, default=os.cpu_count())
  p.add_argument("--steps", type=int, default=20)
  p.add_argument("--warmup", type=int, default=3)
  return p.parse_args()


ARGS = parse()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from fjft import optim  # noqa: E402
from fjft.defaults import classify_config  # noqa: E402
from fjft.models import registry  # noqa: E402
from fjft.runner import build_model, make_apply_fn  # noqa: E402
from fjft.step import TrainState, make_train_step  # noqa: E402
from fjft.tasks import classify  # noqa: E402
from flax import nnx  # noqa: E402


def sentences(n):
  here = os.path.dirname(os.path.abspath(__file__))
  path = os.path.join(here, "..", "..", "shared", "data", "sst2", "test.tsv")
  if os.path.isfile(path):
    with open(path) as f:
      lines = [l.split("\t")[0] for l in f.read().splitlines()[1:]]
  else:
    lines = ["a plain sentence of moderate length for timing the step"] * n
  return (lines * (n // len(lines) + 1))[:n]


def batch_arrays(model_path, n, seq):
  from fjft.tokenizer import Tokenizer
  tok = Tokenizer.from_dir(model_path)
  ids = np.full((n, seq), tok.pad_id, np.int32)
  mask = np.zeros((n, seq), np.int32)
  for i, x in enumerate(tok.encode_batch(sentences(n), seq)):
    ids[i, :len(x)] = x
    mask[i, :len(x)] = 1
  labels = (np.arange(n) % 2).astype(np.int32)
  return ids, mask, labels


def time_fjft(model_path, ids, mask, labels):
  c = classify_config()
  c.model.name = model_path
  family, path = registry.resolve(model_path)
  model, _ = build_model(c, family, path, 2)
  graphdef, params = nnx.split(model)
  tx = optim.make_optimizer(c.optim, 1000)
  step = jax.jit(make_train_step(make_apply_fn(graphdef, "float32"), classify.loss_fn, tx, 1,
                                 jax.random.key(0)), donate_argnums=0)
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))
  batch = {"input_ids": jnp.asarray(ids), "attention_mask": jnp.asarray(mask),
           "labels": jnp.asarray(labels), "weights": jnp.ones(len(labels), jnp.float32)}
  for _ in range(ARGS.warmup):
    state, m = step(state, batch)
  jax.block_until_ready(m)
  t = time.perf_counter()
  for _ in range(ARGS.steps):
    state, m = step(state, batch)
  jax.block_until_ready(m)
  return ARGS.steps * len(labels) / (time.perf_counter() - t)


def time_hf(model_path, ids, mask, labels):
  import torch
  import transformers
  torch.set_num_threads(ARGS.threads)
  torch.manual_seed(0)
  model = transformers.BertForSequenceClassification.from_pretrained(model_path, num_labels=2)
  model.train()
  opt = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.01)
  ids_t, mask_t, lab_t = (torch.as_tensor(ids, dtype=torch.long),
                          torch.as_tensor(mask, dtype=torch.long),
                          torch.as_tensor(labels, dtype=torch.long))

  def step():
    opt.zero_grad(set_to_none=True)
    loss = model(input_ids=ids_t, attention_mask=mask_t, labels=lab_t).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()

  for _ in range(ARGS.warmup):
    step()
  t = time.perf_counter()
  for _ in range(ARGS.steps):
    step()
  return ARGS.steps * len(labels) / (time.perf_counter() - t)


def main():
  _, model_path = registry.resolve("all-minilm-l6-v2")
  ids, mask, labels = batch_arrays(model_path, ARGS.batch, ARGS.seq)
  print(f"all-MiniLM-L6-v2 train step, batch {ARGS.batch} x {ARGS.seq} tokens, float32, "
        f"{ARGS.threads} threads, {ARGS.steps} timed steps after {ARGS.warmup} warm-up")
  hf = time_hf(model_path, ids, mask, labels)
  print(f"HF transformers (PyTorch {__import__('torch').__version__}): {hf:8.1f} examples/s")
  ours = time_fjft(model_path, ids, mask, labels)
  print(f"fjft (JAX {jax.__version__}):               {ours:8.1f} examples/s")
  print(f"ratio fjft / HF: {ours / hf:.2f}x")


if __name__ == "__main__":
  sys.exit(main())
