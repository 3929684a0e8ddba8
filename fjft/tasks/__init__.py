"""The tasks fjft fine-tunes for. A task is a folder here and one line in TASKS.

Nothing outside this folder branches on a task's name: the runner (fjft.run.runner), the
commands that open a finished run (fjft.run.opened) and the memory plan ask `get(name)`
for what differs, through the interface in fjft/tasks/base.py.
"""

from __future__ import annotations

import difflib
import importlib

from fjft.errors import ConfigError

# Task name (config.task, model.json "task") -> the module whose TASK implements it.
# Modules are imported when first asked for: a classification run never imports decoders.
TASKS: dict[str, str] = {
    "classify": "fjft.tasks.classify.task",
    "lm": "fjft.tasks.lm.task",
    "preference": "fjft.tasks.preference.task",
    "retrieval": "fjft.tasks.retrieval.task",
}
# The task of a run directory whose model.json does not name one: only classification runs
# were written before model.json recorded the task.
UNNAMED_RUN_TASK = "classify"


def get(name: str):
  """The Task registered as `name`."""
  if name not in TASKS:
    close = difflib.get_close_matches(str(name), TASKS, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"config field task={name!r} is not a task fjft has "
                      f"({', '.join(TASKS)}){hint}")
  return importlib.import_module(TASKS[name]).TASK
