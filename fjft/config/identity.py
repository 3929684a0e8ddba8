"""Run identity: the canonical JSON of a config and its sha256, the run hash that names a
run directory (<name>-<hash12>), and the written compatibility policy that keeps every
earlier run's name when fields are added."""

from __future__ import annotations

import hashlib
import json

import ml_collections

from fjft.config.experiment import to_dict

# Fields that cannot change what a run computes: they are left out of the run hash, so
# that changing them resumes the same run instead of starting a new one.
NON_IDENTITY_FIELDS = (
    "workdir",
    "train.log_every",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "train.progress",
)

# Fields added after runs existed, with the value that means "off": left out of the run hash
# at that value, so adding a feature does not rename (and restart) every existing run.
HASHED_WHEN_SET = {
    "optim.freeze": "",
    "optim.lr_groups": "",
    "optim.state_dtype": "float32",
    "model.pooling": "pooler",   # classification; retrieval's "auto"/"mean"/"cls" stay hashed
    # LM and retrieval; on by default: it changes no shipped experiment's splits (checked)
    "data.drop_duplicates": True,
    "data.chat_template": "",     # LM: the model's own template
}
# Groups added later, left out of the hash while their switch field is off.
GROUPS_HASHED_WHEN_ON = {"peft": ("method", "")}
# Fields hashed as this fixed value whatever they are set to. The mesh lays the same
# computation out over the devices (results agree to float rounding, as across device
# counts, which are not hashed either): a run keeps its name, and resumes, on another
# mesh. Hashing the old default rather than dropping the field keeps earlier runs' names.
HASHED_AS = {"mesh": {"data": -1, "fsdp": 1, "tensor": 1}}


def canonical_json(config: ml_collections.ConfigDict | dict, *, identity_only: bool) -> str:
  """Sorted-key, compact JSON: byte-identical for equal configs on any machine."""
  d = config if isinstance(config, dict) else to_dict(config)
  if identity_only:
    d = json.loads(json.dumps(d))
    for key in NON_IDENTITY_FIELDS + tuple(HASHED_WHEN_SET):
      *parents, leaf = key.split(".")
      node = d
      for p in parents:
        node = node.get(p, {})
      if isinstance(node, dict) and (key in NON_IDENTITY_FIELDS
                                     or node.get(leaf, HASHED_WHEN_SET.get(key)) == HASHED_WHEN_SET[key]):
        node.pop(leaf, None)
    for group, (switch, off) in GROUPS_HASHED_WHEN_ON.items():
      if isinstance(d.get(group), dict) and d[group].get(switch, off) == off:
        d.pop(group)
    for key, value in HASHED_AS.items():
      if key in d:
        d[key] = value
  # repr of floats is shortest-round-trip since Python 3.1, so 1e-4 hashes the same everywhere.
  return json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def config_hash(config: ml_collections.ConfigDict | dict) -> str:
  """sha256 of the canonical JSON of the result-relevant fields."""
  return hashlib.sha256(canonical_json(config, identity_only=True).encode()).hexdigest()


def run_name(config: ml_collections.ConfigDict | dict) -> str:
  name = config["name"]
  return f"{name}-{config_hash(config)[:12]}"
