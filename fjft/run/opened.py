"""Use a finished (or running) run directory: load its best model and predict."""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fjft.models import adapters
from fjft.run import rundir
from fjft.training.checkpoint import abstract_like, restore_best_params
from fjft.data import batches as batches_lib
from fjft.data.clean import normalize_text
from fjft.errors import FjftError
from fjft.models import registry
from fjft.models.layers import lora
from fjft.tasks.classify.task import make_apply_fn, per_example_outputs
from fjft.training.step import make_eval_step
from fjft.tasks.classify import model as classify
from fjft.tasks.retrieval import model as retrieval
from fjft.models.tokenizer import Tokenizer


@dataclasses.dataclass
class LoadedRun:
  run_dir: str
  config: dict
  info: dict            # model.json: family, hf_config, labels, max_length, buckets
  tokenizer: Tokenizer
  graphdef: object
  params: object
  best_step: int


def skeleton(info: dict) -> nnx.Module:
  """The run's model with the right shapes, without reading pretrained weights."""
  family = registry.FAMILIES[info["family"]]
  cfg = family.Config.from_hf(info["hf_config"])
  encoder = family.Model(cfg, rngs=nnx.Rngs(0))
  adapters.apply(encoder, info.get("peft_structure"))
  if info.get("task") == "retrieval":
    return retrieval.Embedder(encoder, info["pooling"], info["normalize"])
  return classify.Classifier(encoder, cfg.hidden_size, len(info["labels"]), 0.0, rngs=nnx.Rngs(0),
                             pooling=info.get("pooling", "pooler"))


def task_of(run_dir: str) -> str | None:
  """"classify", "lm" or "retrieval" for a run directory; None if it has no model.json."""
  info_path = os.path.join(run_dir, "model.json")
  if not os.path.isfile(info_path):
    return None
  return rundir.read_json(info_path).get("task", "classify")


def is_lm_run(run_dir: str) -> bool:
  """Whether `run_dir` holds a fine-tuned decoder (fjft.lm_runner)."""
  return task_of(run_dir) == "lm"


# What to run on each kind of run directory, for the error when the wrong tool is used.
TOOLS = {"classify": "python -m fjft.predict", "lm": "python -m fjft.generate",
         "retrieval": "python -m fjft.embed or python -m fjft.search"}


def load_run(run_dir: str, task: str = "classify", *, merge: bool = True) -> LoadedRun:
  """The best checkpoint of an encoder run of `task` ("classify" or "retrieval"). A LoRA
  run's adapters (and quantised base) are merged into plain float32 kernels unless
  `merge` is False (to export the adapters)."""
  if not os.path.isdir(run_dir):
    raise FjftError(f"--run: {run_dir} is not a run directory")
  info_path = os.path.join(run_dir, "model.json")
  if not os.path.isfile(info_path):
    raise FjftError(f"--run: {run_dir} has no model.json: is it an fjft run directory?")
  info = rundir.read_json(info_path)
  found = info.get("task", "classify")
  if found != task:
    raise FjftError(f"--run: {run_dir} is a {found} run, not a {task} run; use {TOOLS[found]}")
  config = rundir.read_json(os.path.join(run_dir, "config.json"))
  abstract = nnx.eval_shape(lambda: skeleton(info))
  graphdef, abstract_params = nnx.split(abstract)
  target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), abstract_params)
  best_step, params = restore_best_params(run_dir, abstract_like(target))
  if merge and info.get("peft_structure"):
    graphdef, params = nnx.split(lora.merge(nnx.merge(graphdef, params)))
  return LoadedRun(run_dir=run_dir, config=config, info=info,
                   tokenizer=Tokenizer.from_dir(os.path.join(run_dir, "tokenizer")),
                   graphdef=graphdef, params=params, best_step=best_step)


def predict_texts(run: LoadedRun, texts: list[str], batch_size: int = 64) -> np.ndarray:
  """Class probabilities [len(texts), num_labels], texts cleaned as in training."""
  lowercase = run.config.get("data", {}).get("lowercase", False)
  cleaned = [normalize_text(t, lowercase=lowercase) for t in texts]
  enc = batches_lib.encode(cleaned, np.zeros(len(cleaned), np.int32), run.tokenizer,
                           run.info["max_length"])
  eval_step = jax.jit(make_eval_step(make_apply_fn(run.graphdef, run.info["compute_dtype"]),
                                     classify.predict_fn))
  return per_example_outputs(eval_step, run.params, enc, batch_size, run.info["buckets"],
                       run.tokenizer.pad_id)


def logits_texts(run: LoadedRun, texts: list[str]) -> np.ndarray:
  """Raw logits of the best model, one row per text (used by export parity checks)."""
  enc = batches_lib.encode(texts, np.zeros(len(texts), np.int32), run.tokenizer,
                           run.info["max_length"])
  model = nnx.merge(run.graphdef, run.params)
  rows = []
  for ids in enc.ids:
    ids = jnp.asarray(ids)[None]
    rows.append(np.asarray(model(ids, jnp.ones_like(ids))[0]))
  return np.stack(rows)
