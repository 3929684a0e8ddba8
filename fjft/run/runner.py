"""The one entry that trains a config, whatever its task (train, sweep and reproduce use it)."""

from __future__ import annotations


def run(config, workdir: str, *, rerun: bool = False, say=print) -> dict:
  """Trains (or resumes) `config`'s run: a decoder LM when config.task == "lm"
  (fjft.lm_runner), a search embedder when "retrieval" (fjft.retrieval_runner), else a
  classifier (fjft.runner). Returns its results."""
  task = config.get("task")
  if task == "lm":
    from fjft.tasks.lm import task as lm_runner  # decoders are imported only for LM runs
    return lm_runner.run(config, workdir, rerun=rerun, say=say)
  if task == "retrieval":
    from fjft.tasks.retrieval import task as retrieval_runner
    return retrieval_runner.run(config, workdir, rerun=rerun, say=say)
  from fjft.tasks.classify import task as runner
  return runner.run(config, workdir, rerun=rerun, say=say)


def best_params(run_dir: str):
  """The best checkpoint's params of a finished run of any task."""
  from fjft.run import opened as infer
  task = infer.task_of(run_dir)
  if task == "lm":
    from fjft.models import pretrained as lm
    return lm.load_run(run_dir).params
  return infer.load_run(run_dir, task or "classify").params
