"""Every encoder family against transformers' PyTorch AutoModel (float32), over one table.

Tiny random models (every weight and bias randomised, so biases and norm scales are
exercised), saved by transformers with save_pretrained and read back by fjft; a right-padded
batch. Each test runs on every row of CASES, so a family added there gets every check:
last hidden state parity, scan == unrolled (where the family's Config has scan_layers),
a logical partition spec on every param, and the HF tensors round-tripping exactly.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fjft.models import bert, distilbert, electra
from fjft.models import deberta, modernbert

torch = pytest.importorskip("torch", reason="parity tests need torch")
transformers = pytest.importorskip("transformers", reason="parity tests need transformers")

TOL = 1e-4
VOCAB = 120
# Every logical axis name an encoder param may carry (fjft.models.bert's docstring).
LOGICAL_NAMES = {"vocab", "embed", "heads", "mlp", "position", "types", "layers", None}

_SMALL = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
              intermediate_size=64)

# The encoder families, one row each: case name -> (the fjft family module, a function
# giving the HF config of a tiny random model). Every test below runs on every row.
CASES = {
    "bert": (bert, lambda: transformers.BertConfig(**_SMALL, max_position_embeddings=40)),
    # positions from pad_token_id + 1, one token type
    "roberta": (bert, lambda: transformers.RobertaConfig(
        **_SMALL, max_position_embeddings=42, type_vocab_size=1, pad_token_id=1)),
    "xlm-roberta": (bert, lambda: transformers.XLMRobertaConfig(
        **_SMALL, max_position_embeddings=42, type_vocab_size=1, pad_token_id=1)),
    "distilbert": (distilbert, lambda: transformers.DistilBertConfig(
        vocab_size=VOCAB, dim=32, n_layers=2, n_heads=4, hidden_dim=64,
        max_position_embeddings=40)),
    # ReLU, and the position table sinusoidal (not randomised: the saved table is HF's)
    "distilbert-sinusoidal": (distilbert, lambda: transformers.DistilBertConfig(
        vocab_size=VOCAB, dim=32, n_layers=2, n_heads=4, hidden_dim=64,
        max_position_embeddings=40, sinusoidal_pos_embds=True, activation="relu")),
    # embedding_size != hidden_size: the embeddings_project Linear
    "electra": (electra, lambda: transformers.ElectraConfig(
        **_SMALL, embedding_size=16, max_position_embeddings=40)),
    # embedding_size == hidden_size: no projection
    "electra-unprojected": (electra, lambda: transformers.ElectraConfig(
        **_SMALL, embedding_size=32, max_position_embeddings=40)),
    # DeBERTa-v3: c2p + p2c sharing the q/k projections, log buckets (8: distances past 4
    # bucketed), normalised relative embeddings, no absolute positions or token types
    "deberta-v3": (deberta, lambda: transformers.DebertaV2Config(
        **_SMALL, max_position_embeddings=64, relative_attention=True, position_buckets=8,
        norm_rel_ebd="layer_norm", share_att_key=True, pos_att_type="p2c|c2p",
        position_biased_input=False, type_vocab_size=0)),
    # DeBERTa-v2: own position projections, distances clamped at 6, absolute positions,
    # token types, embedding_size != hidden_size, the convolution after layer 0
    "deberta-v2": (deberta, lambda: transformers.DebertaV2Config(
        **_SMALL, max_position_embeddings=40, relative_attention=True, max_relative_positions=6,
        pos_att_type=["c2p", "p2c"], type_vocab_size=2, embedding_size=24,
        conv_kernel_size=3, conv_act="gelu")),
    # global, local, global; the local window (|i - j| <= 2) shorter than the batch
    "modernbert": (modernbert, lambda: transformers.ModernBertConfig(
        **{**_SMALL, "num_hidden_layers": 3}, max_position_embeddings=64, local_attention=4,
        global_attn_every_n_layers=2, pad_token_id=0, bos_token_id=1, eos_token_id=2,
        cls_token_id=1, sep_token_id=2)),
    # with every bias, other RoPE thetas
    "modernbert-biases": (modernbert, lambda: transformers.ModernBertConfig(
        **{**_SMALL, "num_hidden_layers": 3}, max_position_embeddings=64, local_attention=6,
        global_attn_every_n_layers=3, pad_token_id=0, bos_token_id=1, eos_token_id=2,
        cls_token_id=1, sep_token_id=2, norm_bias=True, attention_bias=True, mlp_bias=True,
        global_rope_theta=500.0, local_rope_theta=50.0)),
}


def _batch(pad_id):
  """(input_ids, attention_mask) [3, 11], right-padded with the model's pad id."""
  rng = np.random.default_rng(0)
  ids = rng.integers(3, VOCAB, size=(3, 11)).astype(np.int32)
  mask = np.ones_like(ids)
  mask[0, 5:], mask[2, 8:] = 0, 0
  ids[mask == 0] = pad_id
  return ids, mask


@functools.cache
def _jitted(graphdef):

  @jax.jit
  def forward(state, ids, mask):
    return nnx.merge(graphdef, state)(ids, mask)[0]

  return forward


def _forward(model, ids, mask):
  graphdef, state = nnx.split(model)
  return np.asarray(_jitted(graphdef)(state, jnp.asarray(ids), jnp.asarray(mask)))


def _max_diff(a, b, mask):
  keep = np.asarray(mask, bool)
  return float(np.abs(a[keep] - b[keep]).max())


def _randomise(hf_model):
  """Every param random: norm scales around 1, the rest around 0."""
  torch.manual_seed(0)
  with torch.no_grad():
    for name, p in hf_model.named_parameters():
      if getattr(hf_model.config, "sinusoidal_pos_embds", False) and "position" in name:
        continue
      is_norm = "norm" in name.lower()
      base = 1.0 if is_norm and name.endswith("weight") else 0.0
      p.copy_(base + 0.2 * torch.randn_like(p))


@pytest.fixture(scope="module", params=tuple(CASES))
def case(request, tmp_path_factory):
  """(name, module, HF folder, fjft cfg, model, ours, theirs, mask)."""
  name = request.param
  module, make_config = CASES[name]
  hf_config = make_config()
  torch.manual_seed(0)
  hf_model = transformers.AutoModel.from_config(hf_config, attn_implementation="eager").eval()
  _randomise(hf_model)
  folder = tmp_path_factory.mktemp(name)
  hf_model.save_pretrained(folder, safe_serialization=True)
  cfg, model = module.from_hf(str(folder))
  pad = hf_config.pad_token_id if hf_config.pad_token_id is not None else 0
  ids, mask = _batch(pad)
  ours = _forward(model, ids, mask)
  with torch.no_grad():
    theirs = hf_model(input_ids=torch.tensor(ids, dtype=torch.long),
                      attention_mask=torch.tensor(mask, dtype=torch.long)
                      ).last_hidden_state.numpy()
  return name, module, folder, cfg, model, ours, theirs, mask


def test_last_hidden_state_matches_transformers(case):
  name, module, _, cfg, _, ours, theirs, mask = case
  assert mask.min() == 0  # the batch really is padded
  assert ours.dtype == np.float32 and ours.shape == theirs.shape
  diff = _max_diff(ours, theirs, mask)
  assert diff < TOL, (name, diff)
  assert module.Config.from_hf(cfg.to_hf()) == cfg


def test_scan_and_unrolled_agree(case):
  name, module, folder, cfg, model, ours, _, mask = case
  if "scan_layers" not in {f.name for f in dataclasses.fields(cfg)}:
    pytest.skip(f"{name}: the family has no scan_layers option")
  cfg2, model2 = module.from_hf(str(folder), scan_layers=True)
  assert cfg2.scan_layers
  again = _forward(model2, *_batch(cfg.pad_token_id))
  assert _max_diff(again, ours, mask) < 1e-5, name
  exported, reference = module.to_hf_state_dict(cfg2, model2), module.to_hf_state_dict(cfg, model)
  assert exported.keys() == reference.keys()
  assert all(np.array_equal(exported[k], reference[k]) for k in reference)


def test_every_param_has_a_logical_partition_spec(case):
  name, _, _, _, model, _, _, _ = case
  state = nnx.state(model, nnx.Param)
  specs = dict(nnx.to_flat_state(nnx.get_partition_spec(state)))
  params = dict(nnx.to_flat_state(state))
  assert specs.keys() == params.keys()
  for path, param in params.items():
    spec = specs[path].get_value()
    assert isinstance(spec, jax.sharding.PartitionSpec), (name, path)
    assert len(spec) == param.get_value().ndim, (name, path, spec)
    assert set(spec) <= LOGICAL_NAMES, (name, path, spec)
    if param.get_value().ndim == 2:  # every matrix is sharded over something
      assert any(n is not None for n in spec), (name, path, spec)


def test_hf_tensors_round_trip(case):
  """to_hf_state_dict gives back exactly the checkpoint's tensors (as the table names
  them); whatever of the checkpoint it leaves out, the family declares ignorable."""
  name, module, folder, cfg, model, _, _, _ = case
  from fjft.weights import hf_tensors
  saved = {module.canonical_name(cfg, k): np.asarray(v)
           for k, v in hf_tensors.read_folder(folder).arrays.items()}
  exported = module.to_hf_state_dict(cfg, model)
  assert all(v.dtype == np.float32 for v in exported.values())
  missing = sorted(set(exported) - set(saved))
  assert not missing, (name, missing)
  for k, v in exported.items():
    assert np.array_equal(v, saved[k]), (name, k)
  left = sorted(k for k in set(saved) - set(exported) if not module.ignorable(cfg, k))
  assert not left, (name, left)
