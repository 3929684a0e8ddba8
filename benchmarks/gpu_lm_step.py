"""Decoder training-step throughput on a GPU: fjft (JAX) vs Hugging Face transformers, eager
and torch.compile, in one run.

  python benchmarks/gpu_lm_step.py [--shapes gpt2,llama1b] [--sides fjft,hf,hf_compile]
                                   [--steps 10] [--tiny]

Shapes: GPT-2 124M at 16 x 1024 tokens and the Llama-3.2-1B shape (16 layers, 2048 wide,
128,256-token tied vocabulary) at 4 x 2048, random weights. Each side runs a full fine-tune
step: next-token loss over every token, gradients, clipping at 1.0 and AdamW, float32
params and moments, bfloat16 compute (fjft's compute_dtype; PyTorch's autocast). fjft uses
cuDNN's fused attention on a GPU (model.attention_impl="cudnn"; XLA's elsewhere).

Each (shape, side) runs in its own process, so its peak device memory is its own. Prints
tokens/s, the model FLOPs utilisation against the device's bf16 matmul peak measured in the
same run, peak device memory (peak resident memory on a CPU) and fjft's speed-up over each
PyTorch side. --tiny runs tiny shapes, to check the whole script on a CPU in seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

SHAPES = {
    "gpt2": dict(family="gpt2", batch=16, seq=1024,
                 config=dict(vocab_size=50257, hidden_size=768, num_layers=12, num_heads=12,
                             max_position_embeddings=1024)),
    "llama1b": dict(family="llama", batch=4, seq=2048,
                    config=dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192,
                                num_layers=16, num_heads=32, num_kv_heads=8, head_dim=64,
                                rope_theta=500000.0, tie_word_embeddings=True,
                                max_position_embeddings=2048)),
}
TINY = {
    "gpt2": dict(family="gpt2", batch=2, seq=64,
                 config=dict(vocab_size=512, hidden_size=64, num_layers=2, num_heads=4,
                             max_position_embeddings=64)),
    "llama1b": dict(family="llama", batch=2, seq=64,
                    config=dict(vocab_size=512, hidden_size=64, intermediate_size=128,
                                num_layers=2, num_heads=4, num_kv_heads=2, head_dim=16,
                                rope_theta=500000.0, tie_word_embeddings=True,
                                max_position_embeddings=64)),
}
SIDES = ("fjft", "hf", "hf_compile")
LR, CLIP = 1e-4, 1.0


def parse():
  p = argparse.ArgumentParser()
  p.add_argument("--shapes", default="gpt2,llama1b")
  p.add_argument("--sides", default=",".join(SIDES))
  p.add_argument("--steps", type=int, default=10)
  p.add_argument("--warmup", type=int, default=2)
  p.add_argument("--tiny", action="store_true", help="tiny shapes: check the script on a CPU")
  p.add_argument("--one", default="", help=argparse.SUPPRESS)   # shape:side (a child)
  return p.parse_args()


ARGS = parse()


def shape(name: str) -> dict:
  return (TINY if ARGS.tiny else SHAPES)[name]


def ids(vocab: int, batch: int, seq: int):
  import numpy as np
  return np.random.default_rng(0).integers(0, vocab, (batch, seq)).astype(np.int32)


def flops_per_token(n_params: int, cfg: dict, seq: int) -> float:
  """Training FLOPs per token: 6 N (forward and backward of every weight, the tied
  embedding once: its use as the output projection) + 12 L d T for attention's two
  matmuls (PaLM's count, causal masking not discounted)."""
  heads_dim = cfg["num_heads"] * cfg.get("head_dim", cfg["hidden_size"] // cfg["num_heads"])
  return 6 * n_params + 12 * cfg["num_layers"] * heads_dim * seq


def timed(one, sync) -> float:
  for _ in range(ARGS.warmup):   # compilation and first-step allocations, untimed
    sync(one())
  start = time.perf_counter()
  for _ in range(ARGS.steps):
    out = one()
  sync(out)
  return (time.perf_counter() - start) / ARGS.steps


def peak_rss() -> int:
  with open("/proc/self/status") as f:
    return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def run_fjft(name: str) -> dict:
  import jax
  gpu = jax.devices()[0].platform == "gpu"
  attention = "cudnn" if gpu else "xla"
  try:
    return _fjft_step(name, attention)
  except Exception as e:   # noqa: BLE001 -- said, then XLA's attention is timed instead
    if attention == "xla":
      raise
    out = _fjft_step(name, "xla")
    out["attention"] = f"xla (cudnn failed: {str(e).splitlines()[0][:120]})"
    return out


def _fjft_step(name: str, attention: str) -> dict:
  import importlib

  import jax
  import jax.numpy as jnp
  from flax import nnx

  from fjft.tasks.lm import loss as lm_loss
  from fjft.training import optim
  from fjft.training.step import TrainState, init_opt_state, make_train_step
  s = shape(name)
  family = importlib.import_module(f"fjft.models.{s['family']}")
  cfg = family.Config(**s["config"], attention_impl=None if attention == "xla" else attention)
  graphdef, params = nnx.split(family.init_random(cfg, seed=0))
  params = jax.device_put(params, jax.devices()[0])
  optim_cfg = _Fields(lr=LR, schedule="constant", warmup_fraction=0.0, weight_decay=0.01,
                      clip_norm=CLIP, b1=0.9, b2=0.999, eps=1e-8)
  tx = optim.make_optimizer(optim_cfg, 10**6)
  # committed to the device as the step's outputs are: the second call does not compile again
  state = [jax.device_put(TrainState(step=jnp.zeros((), jnp.int32), params=params,
                                     opt_state=init_opt_state(tx, params)), jax.devices()[0])]
  n_params = optim.count(params)
  del params
  b, t = s["batch"], s["seq"]
  batch = {"input_ids": jnp.asarray(ids(cfg.vocab_size, b, t)),
           "positions": jnp.tile(jnp.arange(t, dtype=jnp.int32), (b, 1)),
           "segment_ids": jnp.ones((b, t), jnp.int32), "loss_mask": jnp.ones((b, t), jnp.int32)}

  def apply_fn(p, batch, key):
    return nnx.merge(graphdef, p).features(batch["input_ids"], batch["positions"],
                                           segment_ids=batch["segment_ids"], dropout_key=key,
                                           compute_dtype=jnp.bfloat16)

  def loss_fn(features, batch):
    targets, weights = lm_loss.shifted_targets(batch["input_ids"], batch["loss_mask"],
                                               batch["segment_ids"])
    return lm_loss.cross_entropy(features, targets, weights)

  step = jax.jit(make_train_step(apply_fn, loss_fn, tx, 1, jax.random.key(0)),
                 donate_argnums=0)

  def one():
    state[0], metrics = step(state[0], batch)
    return metrics["loss"]

  out = {"s_per_step": timed(one, jax.block_until_ready), "params": n_params,
         "attention": attention, "device": jax.devices()[0].device_kind,
         "peak_tflops": matmul_peak_jax()}
  stats = jax.devices()[0].memory_stats() or {}
  out["peak_bytes"] = stats.get("peak_bytes_in_use") or peak_rss()
  return out


class _Fields(dict):
  """The optimizer's config fields as attributes (what make_optimizer reads)."""
  __getattr__ = dict.__getitem__


def matmul_peak_jax() -> float:
  """The device's bf16 matmul throughput, TFLOP/s: the MFU's denominator, measured."""
  import jax
  import jax.numpy as jnp
  n = 8192 if jax.devices()[0].platform == "gpu" else 512
  a = jnp.ones((n, n), jnp.bfloat16)
  f = jax.jit(lambda x: (x @ x).astype(jnp.bfloat16))
  f(a).block_until_ready()
  reps = 50 if n == 8192 else 3
  start = time.perf_counter()
  for _ in range(reps):
    out = f(a)
  out.block_until_ready()
  return 2 * n ** 3 * reps / (time.perf_counter() - start) / 1e12


def run_hf(name: str, compiled: bool) -> dict:
  import torch
  import transformers
  s = shape(name)
  dev = "cuda" if torch.cuda.is_available() else "cpu"
  if s["family"] == "gpt2":
    c = s["config"]
    hf = transformers.GPT2Config(vocab_size=c["vocab_size"], n_embd=c["hidden_size"],
                                 n_layer=c["num_layers"], n_head=c["num_heads"],
                                 n_positions=c["max_position_embeddings"],
                                 resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = transformers.GPT2LMHeadModel(hf)
  else:
    from fjft.models import llama
    hf = llama.Config(**s["config"]).to_hf()
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**hf))
  model = model.float().to(dev).train()
  opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.01,
                          fused=dev == "cuda")
  x = torch.as_tensor(ids(model.config.vocab_size, s["batch"], s["seq"]),
                      dtype=torch.long, device=dev)
  forward = torch.compile(model) if compiled else model

  def one():
    opt.zero_grad(set_to_none=True)
    with torch.autocast(dev, dtype=torch.bfloat16):
      loss = forward(input_ids=x, labels=x).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
    opt.step()
    return loss

  if dev == "cuda":
    torch.cuda.reset_peak_memory_stats()
  out = {"s_per_step": timed(one, lambda loss: loss.item()),
         "params": sum(p.numel() for p in model.parameters())}
  out["peak_bytes"] = torch.cuda.max_memory_allocated() if dev == "cuda" else peak_rss()
  return out


def child(spec: str) -> None:
  name, side = spec.split(":")
  out = run_fjft(name) if side == "fjft" else run_hf(name, side == "hf_compile")
  print("RESULT " + json.dumps(out), flush=True)


def main():
  if ARGS.one:
    return child(ARGS.one)
  print(f"full fine-tune step, AdamW, float32 params, bf16 compute; {ARGS.steps} timed steps "
        f"after {ARGS.warmup} untimed{' (tiny shapes)' if ARGS.tiny else ''}", flush=True)
  print(f"{'shape':8s} {'side':10s} {'batch':>9s} {'params':>8s} {'tok/s':>10s} {'MFU':>6s} "
        f"{'peak GB':>8s}  fjft speed-up")
  failed = 0
  for name in ARGS.shapes.split(","):
    s, rows = shape(name), {}
    for side in ARGS.sides.split(","):
      if side not in SIDES:
        sys.exit(f"--sides: {side!r} is not one of {', '.join(SIDES)}")
      cmd = [sys.executable, os.path.abspath(__file__), f"--one={name}:{side}",
             f"--steps={ARGS.steps}", f"--warmup={ARGS.warmup}"] + (["--tiny"] if ARGS.tiny else [])
      r = subprocess.run(cmd, capture_output=True, text=True)
      lines = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
      if r.returncode != 0 or not lines:
        failed += 1
        why = (r.stderr.strip().splitlines() or ["failed"])[-1][:160]
        print(f"{name:8s} {side:10s} failed: {why}", flush=True)
        continue
      rows[side] = out = json.loads(lines[-1][len("RESULT "):])
      tokens = s["batch"] * s["seq"]
      out["tok_s"] = tokens / out["s_per_step"]
      peak = rows.get("fjft", {}).get("peak_tflops")
      mfu = (f"{out['tok_s'] * flops_per_token(out['params'], s['config'], s['seq']) / 1e12 / peak:6.1%}"
             if peak else f"{'-':>6s}")
      ratios = ""
      if side != "fjft" and "fjft" in rows:
        ratios = f"  {rows['fjft']['tok_s'] / out['tok_s']:.2f}x"
      print(f"{name:8s} {side:10s} {s['batch']:>4d}x{s['seq']:<4d} {out['params'] / 1e6:7.1f}M "
            f"{out['tok_s']:10.0f} {mfu} {out['peak_bytes'] / 2**30:8.2f}{ratios}", flush=True)
    if "fjft" in rows:
      f = rows["fjft"]
      print(f"{name:8s} fjft: {f['device']}, attention {f['attention']}, bf16 matmul peak "
            f"{f['peak_tflops']:.1f} TFLOP/s (measured)", flush=True)
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
