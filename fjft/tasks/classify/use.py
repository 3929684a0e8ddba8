"""A finished classification run in use: class probabilities of new texts, and the file
predictions of `python -m fjft.predict` (scored when the file has gold labels)."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fjft.data import batches as batches_lib
from fjft.data.clean import normalize_text
from fjft.data.readers import INPUT_FILE_HINT, BadRowStats, read_rows
from fjft.errors import DataError, FjftError
from fjft.models import encoders
from fjft.tasks.classify import model as classify
from fjft.training.outputs import per_example_outputs
from fjft.training.step import make_eval_step


def predict_texts(run, texts: list[str], batch_size: int = 64) -> np.ndarray:
  """Class probabilities [len(texts), num_labels] of a loaded run (fjft.run.opened), the
  texts cleaned as in training; the step is compiled once per loaded run."""
  if "predict" not in run.compiled:
    run.compiled["predict"] = jax.jit(make_eval_step(
        encoders.make_apply_fn(run.graphdef, run.info["compute_dtype"]), classify.predict_fn))
  lowercase = run.config.get("data", {}).get("lowercase", False)
  cleaned = [normalize_text(t, lowercase=lowercase) for t in texts]
  enc = batches_lib.encode(cleaned, np.zeros(len(cleaned), np.int32), run.tokenizer,
                           run.info["max_length"])
  # no batch larger than the texts: rows past them would be padding, allocated all the same
  return per_example_outputs(run.compiled["predict"], run.params, enc,
                             max(1, min(batch_size, len(texts))),
                             run.info["buckets"], run.tokenizer.pad_id)


def logits_texts(run, texts: list[str]) -> np.ndarray:
  """Raw logits of the best model, one row per text, unpadded (export parity checks)."""
  enc = batches_lib.encode(texts, np.zeros(len(texts), np.int32), run.tokenizer,
                           run.info["max_length"])
  model = nnx.merge(run.graphdef, run.params)
  rows = []
  for ids in enc.ids:
    ids = jnp.asarray(ids)[None]
    rows.append(np.asarray(model(ids, jnp.ones_like(ids))[0]))
  return np.stack(rows)


def parse_label_map(text: str | None) -> dict[str, str]:
  out = {}
  for item in (text or "").split(","):
    if not item.strip():
      continue
    theirs, eq, ours = item.partition("=")
    if not eq:
      raise FjftError(f"--label_map: {item!r} is not <input label>=<run label>")
    out[theirs.strip()] = ours.strip()
  return out


def gold_indices(rows, labels: list[str], label_map: dict[str, str]) -> list[int]:
  index = {l: i for i, l in enumerate(labels)}
  out = []
  for r in rows:
    label = label_map.get(r.label, r.label)
    if label not in index:
      raise DataError(f"{r.where}: label {r.label!r} is not one of the run's labels {labels}"
                      + ("" if label_map else "; map it with --label_map=<input label>=<run label>"))
    out.append(index[label])
  return out


def predict_file(run, input_path: str, output_path: str, *, text_column: str | None,
                 batch_size: int, label_column: str | None, label_map: str | None) -> list[str]:
  """Writes one {label, probs} line per row of `input_path`; returns the lines to print
  (with gold labels, their accuracy and macro-F1)."""
  column = text_column or run.config["data"]["text_column"]
  rows = read_rows(input_path, text_column=column, label_column=label_column,
                   on_bad_row="error", stats=BadRowStats(INPUT_FILE_HINT))
  if not rows:
    raise DataError(f"{input_path}: no rows to predict")
  labels = run.info["labels"]
  gold = gold_indices(rows, labels, parse_label_map(label_map)) if label_column else None
  probs = predict_texts(run, [r.text for r in rows], batch_size)
  with open(output_path, "w") as out:
    for p in probs:
      out.write(json.dumps({"label": labels[int(p.argmax())],
                            "probs": {l: round(float(x), 6) for l, x in zip(labels, p)}}) + "\n")
  lines = [f"wrote {len(rows)} predictions to {output_path} (best checkpoint, step "
           f"{run.best_step})"]
  if gold is not None:
    m = classify.metrics(np.asarray(gold), probs.argmax(-1), len(labels))
    lines.append(f"scored against {label_column}: accuracy {m['accuracy']:.4f}, "
                 f"macro_f1 {m['macro_f1']:.4f} on {len(rows)} rows")
  return lines
