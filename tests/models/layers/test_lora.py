"""LoRA adapters and quantised bases on every family: a new adapter changes nothing, merging
changes nothing, a quantised base stays close, PEFT's files round-trip with PEFT itself."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fjft.weights import peft_format
from fjft.errors import CheckpointError, ConfigError
from fjft.models import bert, gpt2, llama
from fjft.models.layers import lora

LAYERS = r"(^|\.)layers\."

LLAMA = llama.Config(vocab_size=96, hidden_size=64, intermediate_size=128, num_layers=2,
                     num_heads=4, num_kv_heads=2, max_position_embeddings=64)
GPT2 = gpt2.Config(vocab_size=96, hidden_size=64, intermediate_size=128, num_layers=2,
                   num_heads=4, max_position_embeddings=64)
BERT = bert.Config(vocab_size=96, hidden_size=64, num_layers=2, num_heads=4,
                   intermediate_size=128, max_position_embeddings=64)


def _model(family, cfg, scan=False):
  if family is bert:
    return bert.init_random(cfg, seed=0)
  return family.init_random(dataclasses.replace(cfg, scan_layers=scan), seed=0)


def _logits(family, model):
  ids = (jnp.arange(14).reshape(2, 7) * 7) % 96
  if family is bert:
    return model(ids, jnp.ones_like(ids))[0]
  return model(ids, jnp.broadcast_to(jnp.arange(7), (2, 7)))[0]


def _randomise_b(model, scale=0.05):
  for i, (_, m) in enumerate(lora.linears(model)):
    if m.lora_b is not None:
      shape = m.lora_b.get_value().shape
      m.lora_b.set_value(scale * jax.random.normal(jax.random.key(i), shape))


CASES = [(llama, LLAMA, False), (llama, LLAMA, True), (gpt2, GPT2, False), (gpt2, GPT2, True),
         (bert, BERT, False)]
IDS = ["llama", "llama-scan", "gpt2", "gpt2-scan", "bert"]


@pytest.mark.parametrize("family, cfg, scan", CASES, ids=IDS)
def test_new_adapters_change_nothing_and_merging_changes_nothing(family, cfg, scan):
  model = _model(family, cfg, scan)
  base = _logits(family, model)
  paths = lora.add_lora(model, rank=4, alpha=8, dropout=0.1, target=LAYERS, seed=0)
  per_layer = {llama: 7, gpt2: 4, bert: 4}[family]
  assert len(paths) == per_layer * (1 if scan else cfg.num_layers)
  assert np.array_equal(np.asarray(_logits(family, model)), np.asarray(base))   # B = 0
  _randomise_b(model)
  adapted = _logits(family, model)
  assert float(jnp.abs(adapted - base).max()) > 1e-2
  lora.merge(model)
  assert not lora.adapters(model)
  np.testing.assert_allclose(_logits(family, model), adapted, atol=1e-5)
  plain = _model(family, cfg, scan)
  assert jax.tree.structure(nnx.state(model)) == jax.tree.structure(nnx.state(plain))


@pytest.mark.parametrize("kind, tolerance", [("int8", 0.02), ("nf4", 0.25)])
@pytest.mark.parametrize("family, cfg, scan", CASES, ids=IDS)
def test_quantised_base_is_close_to_the_float_base(family, cfg, scan, kind, tolerance):
  """Per-channel int8 keeps logits within 2% of their range; 4-bit NF4 within 25% (these
  random models have no outlier structure for NF4 to exploit, so its error is the raw
  4-bit one)."""
  model = _model(family, cfg, scan)
  base = _logits(family, model)
  lora.quantize_base(model, kind, LAYERS)
  kernels = [m.kernel.get_value() for _, m in lora.linears(model) if m.quantized]
  assert kernels and all(k.dtype == (jnp.int8 if kind == "int8" else jnp.uint8) for k in kernels)
  err = float(jnp.abs(_logits(family, model) - base).max())
  assert 0 < err < tolerance * float(jnp.abs(base).max())
  # adapters on a quantised base: still no change at B = 0 (up to the float rounding of
  # another compiled program), and merge dequantises
  q_logits = _logits(family, model)
  lora.add_lora(model, rank=2, alpha=4, dropout=0.0, target=LAYERS, seed=0)
  np.testing.assert_allclose(_logits(family, model), q_logits, atol=1e-6)
  _randomise_b(model)
  adapted = _logits(family, model)
  lora.merge(model)
  assert all(m.kernel.get_value().dtype == jnp.float32 for _, m in lora.linears(model))
  np.testing.assert_allclose(_logits(family, model), adapted, atol=1e-4)


def test_int8_kernel_is_a_quarter_of_the_float_bytes():
  model = _model(llama, LLAMA)
  before = sum(x.nbytes for x in jax.tree.leaves(nnx.state(model.layers)))
  lora.quantize_base(model, "int8", LAYERS)
  after = sum(x.nbytes for x in jax.tree.leaves(nnx.state(model.layers)))
  assert after < 0.3 * before


def test_bad_settings_are_clear_errors():
  model = _model(llama, LLAMA)
  with pytest.raises(ConfigError, match="peft.target='nothing' matches no Linear layer"):
    lora.add_lora(model, rank=4, alpha=8, dropout=0.0, target="nothing", seed=0)
  with pytest.raises(ConfigError, match="peft.rank must be >= 1"):
    lora.add_lora(model, rank=0, alpha=8, dropout=0.0, target=LAYERS, seed=0)
  with pytest.raises(ConfigError, match="not a regular expression"):
    lora.add_lora(model, rank=4, alpha=8, dropout=0.0, target="(", seed=0)
  odd = llama.init_random(dataclasses.replace(LLAMA, hidden_size=48, num_heads=4), seed=0)
  with pytest.raises(ConfigError, match="48 input features, not a multiple of the block size"):
    lora.quantize_base(odd, "nf4", LAYERS)
  with pytest.raises(ConfigError, match="peft.quantize must be"):
    lora.quantize_base(model, "int4", LAYERS)


def _hf_dir(tmp_path, family, cfg, model):
  import json
  from fjft.weights.safetensors_io import write_safetensors
  out = tmp_path / "base"
  out.mkdir()
  write_safetensors(family.to_hf_state_dict(cfg, model), str(out / "model.safetensors"))
  hf = cfg.to_hf()
  if family is bert:
    hf["architectures"] = ["BertModel"]
  (out / "config.json").write_text(json.dumps(hf))
  return str(out)


@pytest.mark.parametrize("family, cfg, scan", [(llama, LLAMA, False), (llama, LLAMA, True),
                                               (gpt2, GPT2, False)],
                         ids=["llama", "llama-scan", "gpt2"])
def test_peft_round_trip_on_a_causal_lm(family, cfg, scan, tmp_path):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  peft = pytest.importorskip("peft")
  c = dataclasses.replace(cfg, scan_layers=scan)
  base = family.init_random(c, seed=0)
  base_dir = _hf_dir(tmp_path, family, c, base)
  model = family.init_random(c, seed=0)
  # a subset of the projections: target_modules must then be exact, not every q_proj
  target = r"layers\.(0\.)?(self_attn\.(q|v)_proj|attn\.c_attn|mlp\.down_proj)$"
  lora.add_lora(model, rank=4, alpha=8, dropout=0.05, target=target, seed=0)
  _randomise_b(model)
  structure = {"rank": 4, "alpha": 8.0, "dropout": 0.05}
  names = family.hf_linear_names(c)
  out = peft_format.write_adapter(str(tmp_path / "adapter"), model, family, names, structure,
                                  task_type="CAUSAL_LM", base_model=base_dir)
  hf = transformers.AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
  tuned = peft.PeftModel.from_pretrained(hf, out).eval()
  ids = np.array([[3, 17, 30, 41, 25, 9, 60]], np.int64)
  with torch.no_grad():
    theirs = tuned(torch.as_tensor(ids)).logits.numpy()
  ours = np.asarray(model(jnp.asarray(ids, jnp.int32), jnp.arange(7)[None])[0])
  assert float(np.abs(ours - np.asarray(_logits_plain(family, c))).max()) > 1e-2
  np.testing.assert_allclose(ours, theirs, atol=1e-3)
  # and back: a fresh model with the same adapters reads exactly what was written
  again = family.init_random(c, seed=0)
  lora.add_lora(again, rank=4, alpha=8, dropout=0.05, target=target, seed=1)
  assert peft_format.load_adapter(again, names, out, rank=4, alpha=8.0) == {}
  for path, (a, b) in lora.adapters(model).items():
    a2, b2 = lora.adapters(again)[path]
    assert np.array_equal(np.asarray(a), np.asarray(a2)) and np.array_equal(np.asarray(b),
                                                                              np.asarray(b2))
  with pytest.raises(ConfigError, match="r=4, lora_alpha=8.0; this run has peft.rank=8"):
    peft_format.load_adapter(again, names, out, rank=8, alpha=8.0)
  narrow = family.init_random(c, seed=0)
  lora.add_lora(narrow, rank=4, alpha=8, dropout=0.0, target=r"mlp\.(up|gate|c_fc)", seed=0)
  with pytest.raises(CheckpointError, match="peft.target does not wrap"):
    peft_format.load_adapter(narrow, names, out, rank=4, alpha=8.0)


def _logits_plain(family, cfg):
  ids = np.array([[3, 17, 30, 41, 25, 9, 60]], np.int32)
  return family.init_random(cfg, seed=0)(jnp.asarray(ids), jnp.arange(7)[None])[0]


def test_fused_qkv_adapter_is_three_peft_adapters(tmp_path):
  """BERT's q/k/v are one fjft layer: one A, a B for each; PEFT sees three adapters."""
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  peft = pytest.importorskip("peft")
  base = bert.init_random(BERT, seed=0)
  base_dir = _hf_dir(tmp_path, bert, BERT, base)
  model = bert.init_random(BERT, seed=0)
  lora.add_lora(model, rank=4, alpha=8, dropout=0.0, target=LAYERS, seed=0)
  _randomise_b(model)
  names = bert.hf_linear_names(BERT, prefixed=False)
  out = peft_format.write_adapter(str(tmp_path / "adapter"), model, bert, names,
                                  {"rank": 4, "alpha": 8.0, "dropout": 0.0},
                                  task_type="FEATURE_EXTRACTION", base_model=base_dir)
  hf = transformers.AutoModel.from_pretrained(base_dir, dtype=torch.float32)
  tuned = peft.PeftModel.from_pretrained(hf, out).eval()
  ids = np.array([[2, 17, 30, 41, 25, 9, 3]], np.int64)
  with torch.no_grad():
    theirs = tuned(input_ids=torch.as_tensor(ids),
                   attention_mask=torch.ones_like(torch.as_tensor(ids))).last_hidden_state
  ours = model(jnp.asarray(ids, jnp.int32), jnp.ones((1, 7), jnp.int32))[0]
  np.testing.assert_allclose(np.asarray(ours), theirs.numpy(), atol=1e-3)


@pytest.mark.parametrize("kind", ["int8", "nf4"])
def test_quantised_matmul_gradient_is_the_dequantised_kernels(kind):
  from fjft.models.layers import quant
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(3, 5, 64)), jnp.float32)
  q, s = quant.quantize(jnp.asarray(rng.normal(size=(64, 2, 8)), jnp.float32), kind)
  w = quant.dequantize(q, s, kind)

  def ours(x):
    return jnp.sum(jnp.sin(quant.frozen_matmul(x, q, s, kind, jnp.dtype(jnp.float32))))

  def plain(x):
    return jnp.sum(jnp.sin(jnp.einsum("bti,ijk->btjk", x, w)))

  np.testing.assert_allclose(ours(x), plain(x), rtol=1e-5)
  np.testing.assert_allclose(jax.grad(ours)(x), jax.grad(plain)(x), atol=1e-5)
