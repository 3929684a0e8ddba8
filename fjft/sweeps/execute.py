"""Running a sweep's runs, each an ordinary `python -m fjft.train` in its own process, N at a
time; a failed run does not stop the others; the summary at the end."""

from __future__ import annotations

import os
import subprocess
import time

from fjft.errors import RunBusyError
from fjft.run import lock as run_lock
from fjft.sweeps import grid as sweeps
from fjft.sweeps import summary as sweep_summary


def _reason(log_path: str) -> str:
  """The run's own error line (`error: ...`), else the last line it printed (of its latest
  attempt: the log is appended to)."""
  try:
    with open(log_path, errors="replace") as f:
      lines = [l.strip() for l in f.read().splitlines() if l.strip()]
  except OSError:
    return "no log"
  starts = [i for i, l in enumerate(lines) if l.startswith("=== ")]
  lines = lines[starts[-1] + 1:] if starts else lines
  errors = [l for l in lines if l.startswith("error:")]
  return (errors or lines or ["exited without output"])[-1][:300]


def execute(plan, parallel: int, say=print) -> dict[int, dict]:
  """Runs the plan's pending runs, `parallel` at a time; returns each run's outcome."""
  outcomes: dict[int, dict] = {}
  pending = []
  for run in plan.runs:
    if run.finished_dir:
      outcomes[run.index] = {"status": "skipped", "run_dir": run.finished_dir}
      say(f"[{run.index + 1}/{len(plan.runs)}] {run.label}: already finished in "
          f"{run.finished_dir}, skipped")
    elif (holder := run_lock.holder_if_held(run.run_dir)) is not None:
      outcomes[run.index] = _held(run, holder)
      say(f"[{run.index + 1}/{len(plan.runs)}] {run.label}: {outcomes[run.index]['reason']}, "
          "skipped")
    else:
      pending.append(run)
  logs = os.path.join(plan.sweep_dir, "logs")
  os.makedirs(logs, exist_ok=True)
  running: list[tuple[object, subprocess.Popen, str, float, object]] = []
  try:
    _drive(plan, parallel, pending, running, outcomes, logs, say)
  except KeyboardInterrupt:
    # Ctrl-C reached the runs too (same process group): each saves a checkpoint and exits;
    # rerunning the sweep resumes them.
    say("interrupted: waiting for the running runs to save their checkpoints")
    for run, proc, _, _, log in running:
      proc.wait()
      log.close()
      outcomes[run.index] = {"status": "interrupted", "run_dir": run.run_dir,
                             "reason": "Ctrl-C; rerun the sweep to resume"}
  return outcomes


def _drive(plan, parallel, pending, running, outcomes, logs, say) -> None:
  while pending or running:
    while pending and len(running) < max(parallel, 1):
      run = pending.pop(0)
      if (holder := run_lock.holder_if_held(run.run_dir)) is not None:   # taken meanwhile
        outcomes[run.index] = _held(run, holder)
        say(f"[{run.index + 1}/{len(plan.runs)}] {run.label}: {outcomes[run.index]['reason']}, "
            "skipped")
        continue
      log_path = os.path.join(logs, f"{run.label}-{run.hash12}.log")
      # Appended to: a resumed run's log keeps what came before, and a sweep started twice
      # does not wipe the log of the run the other one trains.
      log = open(log_path, "a")
      # progress=false: a log file is no place for a redrawn bar (not part of the hash).
      argv = sweeps.train_command(plan.spec, run) + ["--config.train.progress=false"]
      log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {sweeps.shell_command(argv)}\n")
      log.flush()
      proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
      running.append((run, proc, log_path, time.time(), log))
      say(f"[{run.index + 1}/{len(plan.runs)}] {run.label}: started ({run.run_name}), "
          f"log {log_path}")
    time.sleep(0.2)
    for item in list(running):
      run, proc, log_path, started, log = item
      if proc.poll() is None:
        continue
      running.remove(item)
      log.close()
      minutes = (time.time() - started) / 60
      if proc.returncode == 0:
        outcomes[run.index] = {"status": "finished", "run_dir": run.run_dir}
        say(f"[{run.index + 1}/{len(plan.runs)}] {run.label}: finished in {minutes:.1f} min")
      elif proc.returncode == RunBusyError.exit_code:   # another process took it first
        outcomes[run.index] = _held(run, run_lock.holder_if_held(run.run_dir))
        say(f"[{run.index + 1}/{len(plan.runs)}] {run.label}: {outcomes[run.index]['reason']}")
      else:
        reason = _reason(log_path)
        outcomes[run.index] = {"status": "failed", "run_dir": run.run_dir,
                               "reason": f"exit {proc.returncode}: {reason}"}
        say(f"[{run.index + 1}/{len(plan.runs)}] {run.label}: FAILED after {minutes:.1f} min "
            f"(exit {proc.returncode}): {reason}")


def _held(run, holder: dict | None) -> dict:
  """The outcome of a run another process is training (a sweep started twice)."""
  by = run_lock.describe_holder(holder) if holder else f"see {run.run_dir}/{run_lock.LOCK_NAME}"
  return {"status": "held", "run_dir": run.run_dir,
          "reason": f"being trained by another process ({by}); "
                    "rerun the sweep once it finishes to collect it"}


def _last_checkpoint_step(run_dir: str) -> int | None:
  """Read from the folder names, without starting Orbax: the dry run stays instant."""
  last = os.path.join(run_dir, "checkpoints", "last")
  steps = [int(n) for n in os.listdir(last) if n.isdigit()] if os.path.isdir(last) else []
  return max(steps) if steps else None


def dry_run_text(plan) -> str:
  lines = [f"sweep of {plan.spec}: {len(plan.runs)} runs in {plan.sweep_dir}"
           f" (swept: {', '.join(plan.swept) or 'nothing'})"]
  for run in plan.runs:
    step = _last_checkpoint_step(run.run_dir)
    holder = run_lock.holder_if_held(run.run_dir)
    status = (f"finished in {run.finished_dir}" if run.finished_dir else
              f"being trained by another process ({run_lock.describe_holder(holder)})"
              if holder is not None else
              f"interrupted: resumes from step {step}" if step is not None else "new")
    lines.append(f"  [{run.index + 1}] {run.label}  {run.run_name}  {status}")
    lines.append(f"      {sweeps.shell_command(sweeps.train_command(plan.spec, run, 'python'))}")
  return "\n".join(lines)


def summarize(plan, outcomes: dict[int, dict], say=print) -> int:
  """Writes the summary files, prints the table and the best run; returns the exit code."""
  rows = sweep_summary.collect(plan, outcomes)
  metric = plan.runs[0].config.train.metric
  paths = sweep_summary.write(plan.sweep_dir, rows, plan.swept, metric)
  say("\n" + sweep_summary.table(rows))
  top = sweep_summary.best(rows, metric)
  if top:
    say(f"\nbest: {top['run']} ({top['hash']}) best dev {metric} "
        f"{top[f'best_dev_{metric}']:.4f}, {top['run_dir']}")
  failed = [r for r in rows if r["status"] in ("failed", "interrupted")]
  for r in failed + [r for r in rows if r["status"] == "held"]:
    say(f"{r['status']}: {r['run']} ({r['hash']}): {r['reason']}")
  say(f"summary: {paths['md']}, {paths['csv']}, {paths['png']}")
  say(f"tensorboard --logdir {plan.sweep_dir}")
  return 1 if failed else 0
