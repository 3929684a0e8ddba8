"""TensorBoard scalars/hparams and the console progress line (process 0 only)."""

from __future__ import annotations

import json
import os
import sys
import time

import jax


class RunLogger:
  """Writes TensorBoard events under <run>/tb and draws a progress bar with rate and ETA."""

  def __init__(self, run_dir: str, total_steps: int, start_step: int, progress: bool):
    self.enabled = jax.process_index() == 0
    self.writer = None
    self.bar = None
    self._last_time, self._last_step = time.time(), start_step
    if not self.enabled:
      return
    from tensorboardX import SummaryWriter  # heavy import kept off the module import path
    self.writer = SummaryWriter(os.path.join(run_dir, "tb"), flush_secs=10)
    if progress:
      from tqdm import tqdm
      self.bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True,
                      file=sys.stderr, smoothing=0.1)

  def text(self, tag: str, value: str, step: int = 0) -> None:
    if self.writer:
      self.writer.add_text(tag, value, step)

  def scalars(self, step: int, values: dict, prefix: str = "") -> None:
    if self.writer:
      for k, v in values.items():
        self.writer.add_scalar(prefix + k, float(v), step)

  def train_progress(self, step: int, values: dict, examples_per_step: int) -> dict:
    """Logs train scalars at `step` and adds examples/s since the last call."""
    now = time.time()
    rate = (step - self._last_step) * examples_per_step / max(now - self._last_time, 1e-9)
    self._last_time, self._last_step = now, step
    values = dict(values, examples_per_s=rate)
    self.scalars(step, values, "train/")
    if self.bar:
      self.bar.set_postfix({k: f"{v:.4g}" for k, v in values.items() if k != "lr"}, refresh=False)
    return values

  def advance(self, step: int) -> None:
    if self.bar:
      self.bar.update(step - self.bar.n)

  def message(self, line: str) -> None:
    if not self.enabled:
      return
    if self.bar:
      self.bar.write(line, file=sys.stderr)
    else:
      print(line, file=sys.stderr, flush=True)

  def hparams(self, hparams: dict, metrics: dict) -> None:
    if self.writer:
      flat = {k: (v if isinstance(v, (int, float, str, bool)) else json.dumps(v))
              for k, v in hparams.items()}
      self.writer.add_hparams(flat, {f"hparam/{k}": v for k, v in metrics.items()}, name=".")

  def close(self) -> None:
    if self.bar:
      self.bar.close()
    if self.writer:
      self.writer.close()
