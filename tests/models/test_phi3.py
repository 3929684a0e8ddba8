"""fjft.models.phi3 beyond the shared decoder parity table (tests/models/test_decoder_parity.py
runs every parity check on its phi3 rows): longrope's short/long choice, the config
spellings and refusals, packing, LoRA on the fused projections as a PEFT adapter, the
training path scanned, and the logical axes."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fjft.errors import ConfigError
from fjft.models import phi3, registry
from fjft.models.layers import lora
from fjft.weights import peft_format, write_safetensors

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

VOCAB = 96
_SMALL = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
              pad_token_id=0, eos_token_id=2)
_LONGROPE = {"rope_type": "longrope", "short_factor": [1.0, 1.2, 1.5, 2.0],
             "long_factor": [1.5, 3.0, 5.0, 9.0]}
CFG = phi3.Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_layers=2,
                  num_heads=4, num_kv_heads=2, max_position_embeddings=64,
                  original_max_position_embeddings=8, rope_scaling=_LONGROPE,
                  pad_token_id=0, eos_token_id=2)


def _hf(**over):
  return transformers.Phi3Config(**{**_SMALL, **over})


def test_registered_and_inv_freq_match_transformers():
  assert registry.FAMILIES["phi3"] is phi3
  init = transformers.modeling_rope_utils.ROPE_INIT_FUNCTIONS["longrope"]
  for over in ({"partial_rotary_factor": 1.0}, {"partial_rotary_factor": 0.75}):
    factors = {k: v[:3] if k != "rope_type" and over["partial_rotary_factor"] < 1 else v
               for k, v in _LONGROPE.items()}
    hf = _hf(original_max_position_embeddings=8, rope_scaling=dict(factors), **over)
    cfg = phi3.Config.from_hf(hf.to_dict())
    short, scale = init(hf, None)
    long, _ = init(hf, None, seq_len=9)
    np.testing.assert_allclose(phi3.inv_freq(cfg), short.numpy(), rtol=1e-7)
    np.testing.assert_allclose(phi3.inv_freq(cfg, long=True), long.numpy(), rtol=1e-7)
    assert phi3.attention_factor(cfg) == pytest.approx(scale) == pytest.approx(2 ** 0.5)
  plain = _hf(partial_rotary_factor=0.75)
  rotary = transformers.AutoModelForCausalLM.from_config(plain).model.rotary_emb
  cfg = phi3.Config.from_hf(plain.to_dict())
  np.testing.assert_allclose(phi3.inv_freq(cfg), rotary.inv_freq.numpy(), rtol=1e-7)
  assert phi3.attention_factor(cfg) == 1.0 and cfg.rotary_dim == 6


def _random_hf_model(hf_config):
  torch.manual_seed(0)
  model = transformers.AutoModelForCausalLM.from_config(
      hf_config, attn_implementation="eager").eval()
  with torch.no_grad():
    for name, p in model.named_parameters():
      p.copy_((1.0 if "norm" in name else 0.0) + 0.2 * torch.randn_like(p))
  return model


def _torch_logits(model, ids, positions):
  with torch.no_grad():
    return model(input_ids=torch.tensor(ids, dtype=torch.long),
                 position_ids=torch.tensor(positions, dtype=torch.long)).logits.numpy()


def test_longrope_short_and_long_factors_as_transformers(tmp_path):
  hf_model = _random_hf_model(_hf(original_max_position_embeddings=8,
                                  rope_scaling=dict(_LONGROPE)))
  hf_model.save_pretrained(tmp_path)
  cfg, model = phi3.from_hf(str(tmp_path))
  ids = np.arange(24, dtype=np.int32).reshape(2, 12) % VOCAB
  for t in (6, 8, 9, 12):  # <= original 8: short factors; longer: long ones
    positions = np.tile(np.arange(t, dtype=np.int32), (2, 1))
    ours = np.asarray(model(jnp.asarray(ids[:, :t]), jnp.asarray(positions))[0])
    theirs = _torch_logits(hf_model, ids[:, :t], positions)
    assert np.abs(ours - theirs).max() < 1e-4, t
  # The factors matter: the first 6 tokens of a long sequence differ from alone.
  long = np.asarray(model(jnp.asarray(ids), jnp.asarray(np.tile(np.arange(12), (2, 1))))[0])
  short = np.asarray(model(jnp.asarray(ids[:, :6]), jnp.asarray(np.tile(np.arange(6), (2, 1))))[0])
  assert np.abs(long[:, :6] - short).max() > 1e-2
  # With a cache, its length picks: an 8-slot cache short, a 12-slot one long.
  for max_len, reference in ((8, short), (12, long[:, :6])):
    cache = phi3.init_cache(cfg, 2, max_len)
    cached, _ = model(jnp.asarray(ids[:, :6]), jnp.asarray(np.tile(np.arange(6), (2, 1))),
                      cache=cache, cache_index=jnp.int32(0))
    assert np.abs(np.asarray(cached) - reference).max() < 1e-5, max_len


def test_config_spellings_and_refusals():
  new = _hf(original_max_position_embeddings=8, rope_scaling=dict(_LONGROPE),
            partial_rotary_factor=1.0).to_dict()
  old = {k: v for k, v in new.items() if k != "rope_parameters"}
  old.update(rope_theta=10000.0, rope_scaling={"type": "su", **{k: v for k, v in _LONGROPE.items()
                                                                if k != "rope_type"}})
  assert phi3.Config.from_hf(new) == phi3.Config.from_hf(old) == CFG
  assert phi3.Config.from_hf(CFG.to_hf()) == CFG
  assert transformers.Phi3Config(**CFG.to_hf()).rope_parameters["long_factor"] == [
      1.5, 3.0, 5.0, 9.0]
  bad = [({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "'yarn'"),
         ({"rope_scaling": {**_LONGROPE, "long_factor": [1.0]}}, "long_factor has 1"),
         ({"rope_scaling": {**_LONGROPE, "beta_fast": 2}}, "beta_fast"),
         ({"rope_scaling": {"rope_type": "longrope"}}, "short_factor"),
         ({"hidden_act": "gelu"}, "gelu"),
         ({"attention_bias": True}, "attention_bias"),
         ({"partial_rotary_factor": 0.4, "rope_scaling": None}, "= 3.* must be even"),
         ({"model_type": "phi"}, "model_type 'phi'")]
  for over, message in bad:
    with pytest.raises(ConfigError, match=message):
      phi3.Config.from_hf({**old, **over})
  with pytest.raises(ConfigError, match="remat"):
    phi3.Config(remat="sometimes")


def test_packed_rows_equal_separate_rows():
  model = phi3.init_random(CFG, seed=3)
  a, b = np.arange(1, 6, dtype=np.int32), np.arange(40, 47, dtype=np.int32)
  packed = np.concatenate([a, b])[None]
  positions = np.concatenate([np.arange(5), np.arange(7)]).astype(np.int32)[None]
  segments = np.array([[1] * 5 + [2] * 7], np.int32)
  together = np.asarray(model(jnp.asarray(packed), jnp.asarray(positions),
                              segment_ids=jnp.asarray(segments))[0])
  # Segments of 5 and 7 (<= original 8): short factors, as each row alone.
  for row, span in ((a, slice(0, 5)), (b, slice(5, 12))):
    alone = np.asarray(model(jnp.asarray(row[None]), jnp.arange(len(row))[None])[0])
    assert np.abs(together[:, span] - alone).max() < 1e-5


def test_lora_on_fused_projections_is_a_peft_adapter(tmp_path):
  peft = pytest.importorskip("peft")
  names = phi3.hf_linear_names(CFG)
  assert names["layers.1.self_attn.qkv_proj"] == ("model.layers.1.self_attn.qkv_proj",)
  assert names["layers.0.mlp.gate_up_proj"] == ("model.layers.0.mlp.gate_up_proj",)
  base_dir = tmp_path / "base"
  base_dir.mkdir()
  write_safetensors(phi3.to_hf_state_dict(CFG, phi3.init_random(CFG, seed=0)),
                    base_dir / "model.safetensors")
  (base_dir / "config.json").write_text(json.dumps(CFG.to_hf()))
  model = phi3.init_random(CFG, seed=0)
  target = r"(qkv_proj|gate_up_proj)$"
  lora.add_lora(model, rank=4, alpha=8, dropout=0.0, target=target, seed=0)
  for i, (_, m) in enumerate(lora.linears(model)):
    if m.lora_b is not None:
      m.lora_b.set_value(0.05 * jax.random.normal(jax.random.key(i), m.lora_b.get_value().shape))
  out = peft_format.write_adapter(str(tmp_path / "adapter"), model, phi3, names,
                                  {"rank": 4, "alpha": 8.0, "dropout": 0.0},
                                  task_type="CAUSAL_LM", base_model=str(base_dir))
  config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
  assert sorted(config["target_modules"]) == ["gate_up_proj", "qkv_proj"]
  hf = transformers.AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
  tuned = peft.PeftModel.from_pretrained(hf, out).eval()
  ids = np.array([[3, 17, 30, 41, 25, 9, 60, 11, 7, 5]], np.int32)
  positions = np.arange(10, dtype=np.int32)[None]
  theirs = _torch_logits(tuned, ids, positions)
  ours = np.asarray(model(jnp.asarray(ids), jnp.asarray(positions))[0])
  np.testing.assert_allclose(ours, theirs, atol=1e-4)
  merged = phi3.from_hf(str(base_dir))[1]
  from fjft.models import adapters
  adapters.with_peft_adapter(merged, names, out)
  again = np.asarray(merged(jnp.asarray(ids), jnp.asarray(positions))[0])
  np.testing.assert_allclose(again, ours, atol=1e-5)


def test_scan_remat_gradients_and_dropout_match_unrolled():
  tensors = phi3.to_hf_state_dict(CFG, phi3.init_random(CFG, seed=2))
  ids = jnp.asarray(np.arange(20).reshape(2, 10) % VOCAB, jnp.int32)
  positions = jnp.tile(jnp.arange(10, dtype=jnp.int32), (2, 1))
  results = []
  for layout in ({}, {"scan_layers": True, "remat": "full"}):
    cfg, model = phi3.from_state_dict(CFG.to_hf(), tensors, attention_dropout=0.1,
                                      hidden_dropout=0.1, **layout)
    graphdef, state = nnx.split(model)

    def loss(state, key):
      logits, _ = nnx.merge(graphdef, state)(ids, positions, dropout_key=key)
      return jnp.mean(jnp.square(logits))

    grad_fn = jax.jit(jax.value_and_grad(loss))
    value, grads = grad_fn(state, jax.random.key(0))
    assert value != grad_fn(state, jax.random.key(1))[0]  # Dropout is on.
    results.append((float(value), phi3.to_hf_state_dict(cfg, grads)))
  (v0, g0), (v1, g1) = results
  assert abs(v0 - v1) < 1e-6
  assert max(np.abs(g0[k] - g1[k]).max() for k in g0) < 1e-7


@pytest.mark.parametrize("scan", [False, True])
def test_every_param_has_a_logical_partition_spec(scan):
  cfg = dataclasses.replace(CFG, scan_layers=scan)
  state = nnx.state(phi3.init_random(cfg), nnx.Param)
  specs = dict(nnx.to_flat_state(nnx.get_partition_spec(state)))
  for path, p in nnx.to_flat_state(state):
    spec = specs[path].get_value()
    assert len(spec) == p.get_value().ndim, (path, spec)
    assert set(spec) <= {"vocab", "embed", "heads", "mlp", "layers", None}, (path, spec)
    assert (spec[0] == "layers") == (scan and path[0] == "layers"), (path, spec)
