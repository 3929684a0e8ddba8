"""fjft.models.gemma beyond the rows of test_decoder_parity.CASES: config.json spellings
and refusals, RoPE tables, the embedding scale in 16-bit compute, logical axes, the
soft-capped LM loss, and training (dropout, grads) scanned == unrolled."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fjft.errors import ConfigError
from fjft.models import gemma, registry
from fjft.models.hf_export import HF_CAUSAL_LM
from fjft.tasks.lm import loss as lm_loss
from tests.models.test_decoder_parity import LOGICAL_NAMES, VOCAB, _hf_config

torch = pytest.importorskip("torch", reason="parity tests need torch")
transformers = pytest.importorskip("transformers", reason="parity tests need transformers")

TYPES = ("gemma", "gemma2", "gemma3_text")


def _tiny(model_type, **kw):
  base = dict(vocab_size=VOCAB, hidden_size=16, intermediate_size=32, num_layers=3,
              num_heads=2, num_kv_heads=1, head_dim=8, model_type=model_type)
  if model_type != "gemma":
    base.update(query_pre_attn_scalar=8, sliding_window=3, final_logit_softcapping=4.0,
                attn_logit_softcapping=3.0, layer_types=("sliding_attention",
                                                         "full_attention",
                                                         "sliding_attention"))
  if model_type == "gemma3_text":
    base.update(rope_local_theta=100.0, rope_scaling={"rope_type": "linear", "factor": 2.0})
  return gemma.Config(**{**base, **kw})


def test_registered_and_exportable():
  for t in TYPES:
    assert registry.FAMILIES[t] is gemma
    assert HF_CAUSAL_LM[t] == gemma.Config.from_hf(_hf_config(t).to_dict()
                                                   ).to_hf()["architectures"][0]


def test_older_config_spellings_read_as_transformers_does():
  new = _hf_config("gemma3_text").to_dict()
  cfg = gemma.Config.from_hf(new)
  assert cfg.layer_types == ("sliding_attention", "full_attention", "sliding_attention")
  assert (cfg.rope_theta, cfg.rope_local_theta) == (1_000_000.0, 100.0)
  assert cfg.rope_scaling == {"rope_type": "linear", "factor": 4.0}
  # transformers 4's spelling: no rope_parameters, no layer_types.
  old = {k: v for k, v in new.items() if k not in ("rope_parameters", "layer_types")}
  old.update(rope_theta=1_000_000.0, rope_local_base_freq=100.0, sliding_window_pattern=2,
             rope_scaling={"type": "linear", "factor": 4.0})
  assert gemma.Config.from_hf(old) == cfg
  assert gemma.Config.from_hf(cfg.to_hf()) == cfg
  g = _hf_config("gemma").to_dict()
  assert gemma.Config.from_hf(dict(g, hidden_act="gelu")).hidden_act == "gelu_pytorch_tanh"
  # Gemma 2's defaults when a config.json leaves the soft-capping out.
  minimal = {k: v for k, v in _hf_config("gemma2").to_dict().items()
             if k not in ("attn_logit_softcapping", "final_logit_softcapping", "layer_types")}
  cfg2 = gemma.Config.from_hf(minimal)
  assert (cfg2.attn_logit_softcapping, cfg2.final_logit_softcapping) == (50.0, 30.0)
  assert cfg2.layer_types == ("sliding_attention", "full_attention", "sliding_attention")
  # transformers' Gemma 3 does not apply attention soft-capping; neither does fjft.
  capped = gemma.Config.from_hf(dict(new, attn_logit_softcapping=20.0))
  assert capped.attn_logit_softcapping == 20.0 and capped.attention_softcap is None


@pytest.mark.parametrize("change, match", [
    ({"use_bidirectional_attention": True}, "use_bidirectional_attention"),
    ({"rope_parameters": {"full_attention": {"rope_type": "yarn", "factor": 4.0},
                          "sliding_attention": {"rope_type": "default"}}}, "yarn"),
    ({"rope_parameters": {"full_attention": {"rope_type": "default"},
                          "sliding_attention": {"rope_type": "linear", "factor": 2.0}}},
     "sliding layers"),
    ({"layer_types": ["sliding_attention", "chunked_attention", "full_attention"]},
     "layer_types"),
    ({"layer_types": ["sliding_attention"]}, "layer_types"),
    ({"sliding_window": None}, "sliding_window"),
    ({"hidden_activation": "swish"}, "swish"),
    ({"model_type": "gemma3"}, "gemma3"),
])
def test_unsupported_configs_name_the_option(change, match):
  with pytest.raises(ConfigError, match=match):
    gemma.Config.from_hf(dict(_hf_config("gemma3_text").to_dict(), **change))


def test_config_refuses_options_of_another_type():
  with pytest.raises(ConfigError, match="sliding_window"):
    _tiny("gemma", sliding_window=4)
  with pytest.raises(ConfigError, match="rope_local_theta"):
    _tiny("gemma2", rope_local_theta=10.0)
  with pytest.raises(ConfigError, match="partial_rotary_factor"):
    gemma.Config.from_hf(dict(_hf_config("gemma").to_dict(), partial_rotary_factor=0.5))


def test_rope_tables_match_transformers():
  hf = transformers.AutoModelForCausalLM.from_config(_hf_config("gemma3_text"))
  rotary = hf.model.rotary_emb
  full, local = gemma.inv_freqs(gemma.Config.from_hf(_hf_config("gemma3_text").to_dict()))
  np.testing.assert_allclose(full, rotary.full_attention_inv_freq.numpy(), rtol=1e-6)
  np.testing.assert_allclose(local, rotary.sliding_attention_inv_freq.numpy(), rtol=1e-6)
  assert not np.allclose(full, local)


def test_embedding_scale_is_cast_to_the_compute_dtype_as_transformers():
  cfg = _tiny("gemma", hidden_size=24, head_dim=12)  # sqrt(24) is not a bfloat16
  model = gemma.init_random(cfg, seed=0)
  ids = jnp.arange(12, dtype=jnp.int32).reshape(1, 12)
  x, _ = model.embed(ids, ids, None, jnp.bfloat16)
  emb = transformers.models.gemma.modeling_gemma.GemmaTextScaledWordEmbedding(
      VOCAB, 24, 0, embed_scale=24 ** 0.5).to(torch.bfloat16)
  weight = np.asarray(model.embed_tokens.embedding[...])
  with torch.no_grad():
    emb.weight.copy_(torch.tensor(weight))
    theirs = emb(torch.tensor(np.asarray(ids), dtype=torch.long)).float().numpy()
  assert x.dtype == jnp.bfloat16
  np.testing.assert_array_equal(np.asarray(x.astype(jnp.float32)), theirs)


@pytest.mark.parametrize("scan", [False, True])
def test_every_param_has_a_logical_partition_spec(scan):
  for t in TYPES:
    state = nnx.state(gemma.init_random(_tiny(t, scan_layers=scan)), nnx.Param)
    specs = dict(nnx.to_flat_state(nnx.get_partition_spec(state)))
    for path, p in nnx.to_flat_state(state):
      spec = specs[path].get_value()
      assert len(spec) == p.get_value().ndim and set(spec) <= LOGICAL_NAMES, (path, spec)
      assert (spec[0] == "layers") == (scan and path[0] == "layers"), (path, spec)


def test_the_lm_loss_soft_caps_its_logits_in_chunks_too():
  cfg = _tiny("gemma2")
  model = gemma.init_random(cfg, seed=1)
  ids = jnp.asarray(np.arange(18).reshape(2, 9) * 7 % VOCAB, jnp.int32)
  positions = jnp.tile(jnp.arange(9, dtype=jnp.int32), (2, 1))
  f = model.features(ids, positions)
  assert f.logit_softcap == 4.0
  logits = f.logits()
  assert float(jnp.abs(logits).max()) < 4.0
  targets, weights = lm_loss.shifted_targets(ids, jnp.ones_like(ids))
  expected = -jnp.sum(jnp.take_along_axis(jax.nn.log_softmax(logits), targets[..., None],
                                          axis=-1)[..., 0] * weights)
  for chunk in (None, 5):
    total, count = lm_loss.cross_entropy(f, targets, weights, chunk_tokens=chunk)
    assert abs(float(total) - float(expected)) < 1e-4 and float(count) == 16.0


@pytest.mark.parametrize("model_type", ["gemma2", "gemma3_text"])
def test_scan_remat_gradients_and_dropout_match_unrolled(model_type):
  # Sliding and global layers (and Gemma 3's two RoPE bases) under one scanned layer.
  cfg = _tiny(model_type)
  tensors = gemma.to_hf_state_dict(cfg, gemma.init_random(cfg, seed=2))
  ids = jnp.asarray(np.arange(16).reshape(2, 8) % VOCAB, jnp.int32)
  positions = jnp.tile(jnp.arange(8, dtype=jnp.int32), (2, 1))
  results = []
  for layout in ({}, {"scan_layers": True, "remat": "full"}):
    cfg2, model = gemma.from_state_dict(cfg.to_hf(), tensors, attention_dropout=0.1,
                                        hidden_dropout=0.1, **layout)
    assert cfg2 == dataclasses.replace(cfg, attention_dropout=0.1, hidden_dropout=0.1,
                                       **layout)
    graphdef, state = nnx.split(model)

    def loss(state, key):
      logits, _ = nnx.merge(graphdef, state)(ids, positions, dropout_key=key)
      return jnp.mean(jnp.square(logits))

    grad_fn = jax.jit(jax.value_and_grad(loss))
    value, grads = grad_fn(state, jax.random.key(0))
    assert value != grad_fn(state, jax.random.key(1))[0]  # Dropout is on.
    results.append((float(value), gemma.to_hf_state_dict(cfg2, grads)))
  (v0, g0), (v1, g1) = results
  assert abs(v0 - v1) < 1e-6
  assert max(np.abs(g0[k] - g1[k]).max() for k in g0) < 1e-6
  assert all(np.abs(g0[k]).max() > 0 for k in g0 if "norm" in k)  # (1 + w) norms train
