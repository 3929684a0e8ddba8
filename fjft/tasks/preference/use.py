"""Scoring pairs of replies with a finished preference run (`python -m fjft.predict`).

Each input row is a pair in the run's own layout (its data.prompt_column / chosen_column /
rejected_column, or two whole dialogues), rendered and cut to data.max_length exactly as
the run's data was. Each reply gets the run's reward: beta times its log-prob ratio to the
reference for DPO and IPO (the reference as in training: a LoRA run's base with its adapters
off, or the starting model, loaded again from model.json's source), beta times its
per-token average log-prob for SimPO and ORPO. The output says which of the two
replies the tuned model prefers; when the first column holds the replies people preferred,
the share it picks is the preference accuracy.
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from fjft.data import readers
from fjft.errors import DataError, FjftError
from fjft.models.pretrained import load_lm
from fjft.run import opened, rundir
from fjft.tasks.preference import data as pref_data
from fjft.tasks.preference import loss as pref_loss
from fjft.tasks.preference.task import pair_logps, pair_rows, reference_mode, without_adapters


def predict_file(lm, input_path: str, output_path: str, *, batch_size: int,
                 text_column=None, label_column=None, label_map=None) -> list[str]:
  """Writes one line per pair of `input_path` to `output_path`; returns lines to print."""
  if text_column or label_column or label_map:
    raise FjftError("--text_column, --label_column and --label_map do not apply to a "
                    "preference run: it reads each row's prompt and two replies from the "
                    "columns it was trained on (data.prompt_column, chosen_column, "
                    "rejected_column in the run's config.json)")
  run_dir = lm.source
  config = ml_collections.ConfigDict(rundir.read_json(os.path.join(run_dir, "config.json")))
  cfg = config.data
  view = ml_collections.ConfigDict(cfg.to_dict())
  view.on_bad_row = "error"
  pairs = pref_data.read_pairs(input_path, view,
                               readers.BadRowStats(readers.INPUT_FILE_HINT))
  if not pairs:
    raise DataError(f"{input_path}: no pairs to score")
  encoded, cut = [], 0
  for pair in pairs:
    try:
      one, cut_prompt, cut_reply = pref_data.encode(lm.tokenizer, pair, cfg)
    except DataError as e:   # a conversation the run's chat template rejects
      raise DataError(f"{e}{readers.INPUT_FILE_HINT}") from None
    encoded.append(one)
    cut += cut_prompt or cut_reply
  rows = pair_rows(encoded, cfg.max_length, lm.tokenizer.pad_id)
  dtype = jnp.dtype(config.model.compute_dtype)
  kind, mode = config.loss.kind, reference_mode(config)
  ref = None
  if mode == "adapters_off":
    # as in training: the run's LoRA model, and its base with every adapter's B at 0
    unmerged = opened.open_run(run_dir, merge=False)
    logps, counts = _score(unmerged.graphdef, unmerged.params, rows, batch_size, dtype)
    ref = _score(unmerged.graphdef, without_adapters(unmerged.params), rows, batch_size,
                 dtype)[0]
  else:
    logps, counts = _score(lm.graphdef, lm.params, rows, batch_size, dtype)
    if mode != "none":   # precompute, frozen_copy: the starting model, loaded again
      start = _starting_model(run_dir, config)
      ref = _score(start.graphdef, start.params, rows, batch_size, dtype)[0]
  _, rewards = pref_loss.pair_losses(
      kind, jnp.asarray(logps), jnp.asarray(counts),
      None if ref is None else jnp.asarray(ref), beta=config.loss.beta,
      label_smoothing=config.loss.label_smoothing, simpo_gamma=config.loss.simpo_gamma)
  rewards = np.asarray(rewards, np.float64)
  first, second = cfg.chosen_column, cfg.rejected_column
  with open(output_path, "w") as f:
    for i, pair in enumerate(pairs):
      row = {"where": pair.where, f"{first}_logp": float(logps[i, 0]),
             f"{second}_logp": float(logps[i, 1]), f"{first}_reward": rewards[i, 0],
             f"{second}_reward": rewards[i, 1], "margin": rewards[i, 0] - rewards[i, 1],
             "prefers": (first if rewards[i, 0] > rewards[i, 1] else
                         second if rewards[i, 0] < rewards[i, 1] else "tie")}
      if ref is not None:
        row.update({f"{first}_ref_logp": float(ref[i, 0]), f"{second}_ref_logp": float(ref[i, 1])})
      f.write(json.dumps(row) + "\n")
  picked = int(np.sum(rewards[:, 0] > rewards[:, 1]))
  ties = int(np.sum(rewards[:, 0] == rewards[:, 1]))
  reward = {"dpo": "log-prob ratio to the starting model", "ipo": "averaged log-prob ratio "
            "to the starting model"}.get(kind, "averaged log-prob")
  lines = [f"scored {len(pairs)} pairs with {kind}'s reward (beta x {reward}) -> {output_path}",
           f"the tuned model prefers the {first!r} reply in {picked} of {len(pairs)} pairs "
           f"({picked / len(pairs):.4f}: the preference accuracy, when {first!r} holds the "
           "preferred replies)"]
  if ties:
    lines.append(f"{ties} pairs tie (the same reward: replies the same after the cut?): "
                 "counted as not preferring the first")
  if cut:
    lines.append(f"{cut} pairs were cut to the run's data.max_length={cfg.max_length} tokens "
                 "(the prompt's start, then the replies' ends), as its training data was")
  return lines


def _starting_model(run_dir: str, config):
  """The model the run started from: model.json's source (an absolute path, whatever the
  directory the run was started in), with peft.init_from's adapters merged if it had any."""
  info = opened.read_info(run_dir)
  source, adapter = info["source"], config.peft.init_from or None
  for what, path in (("starting model", source), ("peft.init_from adapter", adapter)):
    if path is not None and not os.path.exists(path):
      raise FjftError(f"{info.path}: the run's {what} {path} is not there any more; its "
                      "reference log-probs need it")
  return load_lm(source, adapter=adapter)


def _score(graphdef, params, rows, batch_size: int, dtype) -> tuple[np.ndarray, np.ndarray]:
  fn = jax.jit(lambda params, batch: pair_logps(graphdef, params, batch, None, dtype))
  logps, counts = np.zeros((len(rows), 2)), np.zeros((len(rows), 2))
  for start in range(0, len(rows), batch_size):
    idx = np.arange(start, min(start + batch_size, len(rows)))
    batch = {k: v for k, v in rows.take(idx, batch_size).items() if k != "weight"}
    lp, n = jax.device_get(fn(params, batch))
    logps[idx], counts[idx] = np.asarray(lp)[:len(idx)], np.asarray(n)[:len(idx)]
  return logps, counts
