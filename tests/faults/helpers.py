"""What the fault tests share: a run dir's complete checkpoint steps, waiting on a child
process, and the comparison of a faulted run with the run that was never stopped."""

import json
import os
import time

import jax
import numpy as np
import orbax.checkpoint as ocp


def steps(folder: str) -> list[int]:
  """The complete checkpoints in `folder` (Orbax writes `<step>.orbax-checkpoint-tmp...`
  first, and renames it once complete)."""
  return sorted(int(n) for n in os.listdir(folder) if n.isdigit()) if os.path.isdir(folder) else []


def wait_for(condition, proc, timeout: float = 120) -> None:
  deadline = time.time() + timeout
  while time.time() < deadline:
    if condition():
      return
    if proc.poll() is not None:
      raise AssertionError(f"exited {proc.returncode} first: {proc.communicate()[0][-3000:]}")
    time.sleep(0.005)
  raise AssertionError("timed out")


def last_state(run_dir: str):
  last = os.path.join(run_dir, "checkpoints", "last")
  step = steps(last)[-1]
  with ocp.StandardCheckpointer() as ckptr:
    return step, ckptr.restore(os.path.join(last, str(step), "state"))


def assert_same_run(run_dir: str, reference_dir: str, reference: dict) -> None:
  """results.json and the last train state equal the reference run's, bit for bit."""
  with open(os.path.join(run_dir, "results.json")) as f:
    results = json.load(f)
  for key in ("step", "best_step", "stopped", "dev", "test", "baseline", "history",
              "train_loss"):
    assert results[key] == reference[key], key
  step_a, a = last_state(reference_dir)
  step_b, b = last_state(run_dir)
  assert step_a == step_b
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
