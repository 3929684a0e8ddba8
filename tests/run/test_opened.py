"""Run directories written before model.json recorded `task` and `family` (an HF
model_type) still open: a classifier predicts, a decoder generates, a search run embeds."""

import json
import os
import shutil

import numpy as np
import pytest

from fjft.config import identity
from fjft.errors import FjftError
from fjft.run import opened, runner
from fjft.tasks.classify import use
from fjft.tasks.retrieval import embedding
from tests.tasks.lm.test_train_e2e import _chats, _config


def _as_old(run_dir: str, dest: str, edit) -> str:
  """A copy of run_dir whose model.json is rewritten by `edit` as an older fjft wrote it."""
  shutil.copytree(run_dir, dest)
  path = os.path.join(dest, "model.json")
  info = json.load(open(path))
  edit(info)
  json.dump(info, open(path, "w"))
  return dest


def test_classification_run_without_task_predicts_as_before(finished_run, tmp_path):
  config, workdir, _, _ = finished_run
  run_dir = os.path.join(workdir, identity.run_name(config))
  old = _as_old(run_dir, str(tmp_path / "old"), lambda info: info.pop("task"))
  assert "task" not in json.load(open(os.path.join(old, "model.json")))
  texts = ["where is my order", "I want my money back"]
  np.testing.assert_array_equal(use.predict_texts(opened.open_run(old), texts),
                                use.predict_texts(opened.open_run(run_dir), texts))
  assert opened.read_info(old)["task"] == "classify"


@pytest.mark.slow
def test_decoder_run_with_a_module_path_family_generates_as_before(tiny_llama_dir, tmp_path):
  from fjft.models import decoding, generation
  data = tmp_path / "chats.jsonl"
  _chats(data, 60)
  c = _config(tiny_llama_dir, data, **{"train.steps": 4, "train.eval_every": 4})
  run_dir = runner.run(c, str(tmp_path / "runs"), say=lambda *_: None)["run_dir"]
  assert json.load(open(os.path.join(run_dir, "model.json")))["family"] == "llama"
  old = _as_old(run_dir, str(tmp_path / "old"),
                lambda info: info.update(family="fjft.models.llama"))
  sampling = decoding.SamplingConfig(max_new_tokens=6, temperature=0.0)
  records = [("p", {"prompt": "question about my card"})]
  new_out = generation.generate_records(opened.open_run(run_dir), records, sampling, 1)
  old_out = generation.generate_records(opened.open_run(old), records, sampling, 1)
  assert old_out == new_out and new_out[0]["new_tokens"] > 0


def test_a_command_for_another_task_names_the_right_one(finished_run):
  config, workdir, _, _ = finished_run
  run_dir = os.path.join(workdir, identity.run_name(config))
  with pytest.raises(FjftError, match="is a classify run.*python -m fjft.predict"):
    opened.open_run(run_dir, "generate")


@pytest.mark.slow
def test_search_run_opens_to_embed_and_not_to_predict(tiny_bert_dir, tmp_path):
  from tests.tasks.retrieval.test_train_e2e import tiny_config, write_beir
  c = tiny_config(tiny_bert_dir, write_beir(str(tmp_path / "beir")))
  run_dir = runner.run(c, str(tmp_path / "runs"), say=lambda s: None)["run_dir"]
  run = opened.open_run(run_dir, "embed")
  vectors = embedding.embed_texts(run, ["jet noise", "blade stall"])
  assert vectors.shape[0] == 2 and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
  with pytest.raises(FjftError, match="is a retrieval run.*python -m fjft.search"):
    opened.open_run(run_dir, "predict")


@pytest.mark.parametrize("content, message", [
    (b"[1, 2]", r"model.json: expected a JSON object, got list$"),
    (b"{garbage", r"model.json: not valid JSON \("),
    (b"\xff\xfe\x00garbage", r"model.json: not valid JSON \(not UTF-8 text: "),
])
def test_a_model_json_that_is_not_an_object_is_one_error_naming_it(tmp_path, content, message):
  (tmp_path / "model.json").write_bytes(content)
  with pytest.raises(FjftError, match=message):
    opened.read_info(str(tmp_path))


def test_an_entry_model_json_lacks_is_a_checkpoint_error_naming_it(tmp_path):
  from fjft.errors import CheckpointError
  (tmp_path / "model.json").write_text(json.dumps({"task": "classify", "family": "bert"}))
  info = opened.read_info(str(tmp_path))
  assert info.get("labels") is None
  with pytest.raises(CheckpointError, match=r"model.json: no 'labels' entry \(the file is incomplete"):
    info["labels"]
