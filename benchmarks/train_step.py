"""Training-step throughput: fjft (JAX) vs Hugging Face transformers (PyTorch), same run.

  python benchmarks/train_step.py [--batch 32 --seq 64 --threads 2 --steps 20]        # CPU
  python benchmarks/train_step.py --device gpu --dtype float32,bfloat16 --attention xla,cudnn

Both sides run the same model (all-MiniLM-L6-v2 + a 2-label head), the same batch of real
SST-2 sentences padded to the same length, AdamW with clipping, dropout on, on the same
device (and on a CPU the same number of threads). Prints examples/s of each and the ratio
fjft / HF for every compute dtype asked for. In bfloat16, fjft keeps float32 params and
computes in bfloat16; the PyTorch side runs under torch.autocast, the usual HF recipe.
`--attention cudnn` (GPU, 16-bit only) times fjft with cuDNN's fused attention as well, with
attention dropout off (the fused kernel has none; hidden dropout stays on).
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
  p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
  # "float32:highest" runs fjft's float32 matmuls at full precision: on GPUs XLA's default
  # float32 matmul may use TF32, which PyTorch leaves off unless asked
  p.add_argument("--dtype", default="float32", help="comma-separated compute dtypes")
  p.add_argument("--attention", default="xla",
                 help="comma-separated fjft attention impls: xla, cudnn (16-bit on GPU)")
  p.add_argument("--model", default="all-minilm-l6-v2", help="registered name or HF folder")
  # torch's intra-op threads; XLA's CPU pool takes one thread per core (2 on the CI machine)
  p.add_argument("--threads", type=int, default=os.cpu_count())
  p.add_argument("--steps", type=int, default=20)
  p.add_argument("--warmup", type=int, default=3)
  return p.parse_args()


from fjft import allocator  # noqa: E402

# FJFT_MALLOC=jemalloc times both sides under jemalloc: they share the process, so they
# always share the allocator
allocator.reexec()
ARGS = parse()
if ARGS.device == "cpu":
  os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from fjft.training import optim  # noqa: E402
from fjft.tasks.classify.config import default_config as classify_config  # noqa: E402
from fjft.models import registry  # noqa: E402
from fjft.models import encoders  # noqa: E402
from fjft.tasks.classify.task import build_model  # noqa: E402
from fjft.training.step import TrainState, make_train_step  # noqa: E402
from fjft.tasks.classify import model as classify  # noqa: E402
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
  from fjft.models.tokenizer import Tokenizer
  tok = Tokenizer.from_dir(model_path)
  ids = np.full((n, seq), tok.pad_id, np.int32)
  mask = np.zeros((n, seq), np.int32)
  for i, x in enumerate(tok.encode_batch(sentences(n), seq)):
    ids[i, :len(x)] = x
    mask[i, :len(x)] = 1
  labels = (np.arange(n) % 2).astype(np.int32)
  return ids, mask, labels


def time_fjft(model_path, ids, mask, labels, dtype, attention):
  c = classify_config()
  c.model.name = model_path
  dtype, _, precision = dtype.partition(":")
  c.model.compute_dtype = dtype
  c.model.attention_impl = "" if attention == "xla" else attention
  if attention == "cudnn":
    # attention dropout runs as plain XLA ops (the fused kernel has none): turn it off so
    # the step really uses cuDNN's kernel
    c.model.attention_dropout = 0.0
  model = build_model(c, encoders.load(c), 2)
  graphdef, params = nnx.split(model)
  tx = optim.make_optimizer(c.optim, 1000)
  step = jax.jit(make_train_step(encoders.make_apply_fn(graphdef, dtype), classify.loss_fn, tx, 1,
                                 jax.random.key(0)), donate_argnums=0)
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))
  batch = {"input_ids": jnp.asarray(ids), "attention_mask": jnp.asarray(mask),
           "labels": jnp.asarray(labels), "weights": jnp.ones(len(labels), jnp.float32)}
  with jax.default_matmul_precision(precision or None):
    for _ in range(ARGS.warmup):
      state, m = step(state, batch)
    jax.block_until_ready(m)
    t = time.perf_counter()
    for _ in range(ARGS.steps):
      state, m = step(state, batch)
    jax.block_until_ready(m)
  return ARGS.steps * len(labels) / (time.perf_counter() - t)


def time_hf(model_path, ids, mask, labels, dtype):
  import contextlib

  import torch
  import transformers
  torch.set_num_threads(ARGS.threads)
  torch.manual_seed(0)
  device = "cuda" if ARGS.device == "gpu" else "cpu"
  model = transformers.BertForSequenceClassification.from_pretrained(model_path, num_labels=2)
  model.to(device).train()
  opt = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.01)
  ids_t, mask_t, lab_t = (torch.as_tensor(ids, dtype=torch.long, device=device),
                          torch.as_tensor(mask, dtype=torch.long, device=device),
                          torch.as_tensor(labels, dtype=torch.long, device=device))
  autocast = (torch.autocast(device, dtype=torch.bfloat16) if dtype.startswith("bfloat16")
              else contextlib.nullcontext())
  sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

  def step():
    opt.zero_grad(set_to_none=True)
    with autocast:
      loss = model(input_ids=ids_t, attention_mask=mask_t, labels=lab_t).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()

  for _ in range(ARGS.warmup):
    step()
  sync()
  t = time.perf_counter()
  for _ in range(ARGS.steps):
    step()
  sync()
  return ARGS.steps * len(labels) / (time.perf_counter() - t)


def main():
  import torch
  model_path = registry.resolve(ARGS.model, expect="encoder").path
  ids, mask, labels = batch_arrays(model_path, ARGS.batch, ARGS.seq)
  where = (f"{ARGS.threads} CPU threads" if ARGS.device == "cpu"
           else f"{jax.devices()[0].device_kind} / {torch.cuda.get_device_name()}")
  print(f"all-MiniLM-L6-v2 train step, batch {ARGS.batch} x {ARGS.seq} tokens, {where}, "
        f"{ARGS.steps} timed steps after {ARGS.warmup} warm-up")
  malloc = "jemalloc" if "jemalloc" in os.environ.get("LD_PRELOAD", "") else "system malloc"
  print(f"HF transformers {__import__('transformers').__version__} (PyTorch {torch.__version__}),"
        f" fjft (JAX {jax.__version__}), {malloc}")
  for dtype in ARGS.dtype.split(","):
    hf = time_hf(model_path, ids, mask, labels, dtype)
    print(f"{dtype:16s} HF {'':14s} {hf:9.1f} examples/s")
    for attention in ARGS.attention.split(","):
      if attention == "cudnn" and (ARGS.device != "gpu" or dtype.startswith("float32")):
        continue  # cuDNN's fused attention runs on GPUs in 16-bit types only
      ours = time_fjft(model_path, ids, mask, labels, dtype, attention)
      print(f"{dtype:16s} fjft attention={attention:5s} {ours:9.1f} examples/s"
            f"   ratio fjft / HF {ours / hf:.2f}x", flush=True)


if __name__ == "__main__":
  sys.exit(main())
