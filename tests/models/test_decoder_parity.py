"""fjft.models.llama / gpt2 against transformers' PyTorch causal LMs (float32).

Tiny random models (every weight and bias randomised, so q/k/v biases and
norm scales are exercised), a left-padded batch, and the equivalences the
generation code relies on: scan == unrolled, remat == plain, cached decode
== one full forward pass, export -> transformers == the original.
"""

import dataclasses
import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fjft.errors import CheckpointError, ConfigError
from fjft.models import gpt2, llama
from fjft.models import llama_variants
from fjft.models import gemma
from fjft.models import phi3
from fjft.weights import write_safetensors

torch = pytest.importorskip("torch", reason="parity tests need torch")
transformers = pytest.importorskip("transformers",
                                   reason="parity tests need transformers")

TOL = 1e-4
VOCAB = 96
LOGICAL_NAMES = {"vocab", "embed", "heads", "kv_heads", "mlp", "position",
                 "layers", None}

_SMALL = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
              num_hidden_layers=2, num_attention_heads=4,
              max_position_embeddings=64)
# Phi3Config's default pad/eos ids (32000) lie outside the tiny vocabulary.
_PHI3 = dict(_SMALL, pad_token_id=0, eos_token_id=2)


# Token ids inside the tiny vocabulary (some configs default to ids of a 128k one).
_TOKENS = dict(_SMALL, bos_token_id=1, eos_token_id=2, pad_token_id=0)


# The decoder families, one row each: case name -> (the fjft family module, the HF config
# of a tiny random model). Every test below runs on every row, so a family added here gets
# every check.
CASES = {
    "gpt2": (gpt2, lambda: transformers.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2,
                                                   n_head=4, n_positions=32)),
    # q/k/v biases, tied head, GQA.
    "qwen2": (llama, lambda: transformers.Qwen2Config(**_SMALL, num_key_value_heads=2,
                                                      tie_word_embeddings=True)),
    # GQA and llama3 RoPE scaling hitting all 3 bands.
    "llama3": (llama, lambda: transformers.LlamaConfig(
        **_SMALL, num_key_value_heads=2, rope_theta=10000.0,
        rope_scaling={"rope_type": "llama3", "factor": 8.0,
                      "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 16})),
    # One KV head, a sliding window shorter than T.
    "mistral": (llama, lambda: transformers.MistralConfig(**_SMALL, num_key_value_heads=1,
                                                          sliding_window=4)),
    # q/k norms per head, head_dim 16 != hidden / heads, GQA, untied head.
    "qwen3": (llama_variants, lambda: transformers.Qwen3Config(
        **_TOKENS, num_key_value_heads=2, head_dim=16)),
    # q/k norms over the whole projections, post-norms, GQA, attention biases.
    "olmo2": (llama_variants, lambda: transformers.Olmo2Config(
        **_TOKENS, num_key_value_heads=2, attention_bias=True)),
    # Granite's four scalars, one KV head, MLP biases, tied head.
    "granite": (llama_variants, lambda: transformers.GraniteConfig(
        **_TOKENS, num_key_value_heads=1, embedding_multiplier=12.0, residual_multiplier=0.22,
        attention_multiplier=0.05, logits_scaling=8.0, mlp_bias=True,
        tie_word_embeddings=True)),
    # Layer 1 of 2 without RoPE (no_rope_layer_interval 2), GQA, tied head (its default).
    "smollm3": (llama_variants, lambda: transformers.SmolLM3Config(
        **_TOKENS, num_key_value_heads=2, no_rope_layer_interval=2)),
    # Gemma: sqrt(H)-scaled embeddings, (1 + w) norms, GeGLU, head_dim != H / heads, tied.
    "gemma": (gemma, lambda: transformers.GemmaConfig(**_SMALL, num_key_value_heads=2,
                                                      head_dim=16)),
    # Gemma 2: sliding (window 4 < T) / global alternation over 3 layers, attention and
    # final logit soft-capping (caps the logits reach), query_pre_attn_scalar != head_dim.
    "gemma2": (gemma, lambda: transformers.Gemma2Config(
        **dict(_SMALL, num_hidden_layers=3), num_key_value_heads=2, head_dim=16,
        query_pre_attn_scalar=12, sliding_window=4, attn_logit_softcapping=5.0,
        final_logit_softcapping=8.0)),
    # Gemma 3 text: q/k norms, local RoPE base on sliding layers, linear scaling on the
    # global one, one KV head, final soft-capping, untied head.
    "gemma3_text": (gemma, lambda: transformers.Gemma3TextConfig(
        **dict(_SMALL, num_hidden_layers=3), num_key_value_heads=1, head_dim=16,
        query_pre_attn_scalar=12, sliding_window=4, sliding_window_pattern=2,
        rope_local_base_freq=100.0, rope_scaling={"rope_type": "linear", "factor": 4.0},
        final_logit_softcapping=8.0, tie_word_embeddings=False)),
    # Phi-3: fused qkv / gate_up, GQA, a sliding window shorter than T.
    "phi3": (phi3, lambda: transformers.Phi3Config(**_PHI3, num_key_value_heads=2,
                                                   sliding_window=4)),
    # longrope: every sequence here is longer than original 2, so the long factors and
    # the attention factor of max/original 64/2 apply (also while transformers generates,
    # which recomputes its cache when a sequence crosses the original length; fjft picks
    # by the cache's length, fjft.models.phi3.rope). Short factors: tests/models/test_phi3.
    "phi3_longrope": (phi3, lambda: transformers.Phi3Config(
        **_PHI3, num_key_value_heads=2, original_max_position_embeddings=2,
        rope_scaling={"rope_type": "longrope", "short_factor": [1.0, 1.2, 1.5, 2.0],
                      "long_factor": [1.5, 3.0, 5.0, 9.0]})),
    # Phi-4-mini's shape: RoPE on 3/4 of each head (longrope factors of 3, an explicit
    # attention factor), tied head.
    "phi3_partial": (phi3, lambda: transformers.Phi3Config(
        **_PHI3, partial_rotary_factor=0.75, original_max_position_embeddings=2,
        tie_word_embeddings=True,
        rope_scaling={"rope_type": "longrope", "short_factor": [1.0, 1.1, 1.3],
                      "long_factor": [2.0, 4.0, 6.0], "attention_factor": 1.2})),
}


def _hf_config(name):
  return CASES[name][1]()


FAMILIES = tuple(CASES)
MODULES = {name: module for name, (module, _) in CASES.items()}
# Families whose norms scale by (1 + weight): those weights are drawn around 0, so that
# every family's norms scale by about 1.
OFFSET_NORMS = (gemma,)


def _batch():
  rng = np.random.default_rng(0)
  ids = rng.integers(0, VOCAB, size=(3, 10)).astype(np.int32)
  mask = np.ones_like(ids, dtype=bool)
  mask[0, :3], mask[2, :6] = False, False  # Left padding.
  positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0).astype(np.int32)
  return ids, mask, positions


def _torch_logits(hf_model, ids, mask, positions):
  with torch.no_grad():
    out = hf_model(input_ids=torch.tensor(ids, dtype=torch.long),
                   attention_mask=torch.tensor(mask, dtype=torch.long),
                   position_ids=torch.tensor(positions, dtype=torch.long))
  return out.logits.numpy()


@functools.cache
def _jitted(graphdef):

  @jax.jit
  def forward(state, ids, positions, kv_mask):
    model = nnx.merge(graphdef, state)
    return model(ids, positions, kv_mask=kv_mask)[0]

  @jax.jit
  def step(state, ids, positions, kv_mask, cache, cache_index):
    model = nnx.merge(graphdef, state)
    return model(ids, positions, kv_mask=kv_mask, cache=cache,
                 cache_index=cache_index)

  return forward, step


def _forward(model, ids, mask, positions):
  graphdef, state = nnx.split(model)
  forward, _ = _jitted(graphdef)
  return np.asarray(forward(state, jnp.asarray(ids), jnp.asarray(positions),
                            jnp.asarray(mask)))


def _max_diff(a, b, mask):
  return float(np.abs(a[mask] - b[mask]).max())


@pytest.fixture(scope="module", params=FAMILIES)
def family(request, tmp_path_factory):
  """(name, module, HF folder, torch model, fjft cfg, model, ours, theirs)."""
  name = request.param
  torch.manual_seed(0)
  hf_model = transformers.AutoModelForCausalLM.from_config(
      _hf_config(name), attn_implementation="eager").eval()
  with torch.no_grad():
    for pname, p in hf_model.named_parameters():
      is_norm = "norm" in pname or ".ln_" in pname
      one = is_norm and pname.endswith("weight") and MODULES[name] not in OFFSET_NORMS
      base = 1.0 if one else 0.0
      p.copy_(base + 0.2 * torch.randn_like(p))
  folder = tmp_path_factory.mktemp(name)
  if name == "qwen2":
    hf_model.save_pretrained(folder, safe_serialization=True,
                             max_shard_size="8KB")
    assert (folder / "model.safetensors.index.json").is_file()
  else:
    hf_model.save_pretrained(folder, safe_serialization=True)
  module = MODULES[name]
  cfg, model = module.from_hf(str(folder))
  ids, mask, positions = _batch()
  ours = _forward(model, ids, mask, positions)
  theirs = _torch_logits(hf_model, ids, mask, positions)
  return name, module, folder, hf_model, cfg, model, ours, theirs


def test_logits_match_transformers(family):
  name, module, _, _, cfg, _, ours, theirs = family
  _, mask, _ = _batch()
  assert ours.dtype == np.float32 and ours.shape == (3, 10, VOCAB)
  assert _max_diff(ours, theirs, mask) < TOL, name
  assert module.Config.from_hf(cfg.to_hf()) == cfg


def test_scan_and_remat_give_the_same_logits(family):
  name, module, folder, _, cfg, model, ours, _ = family
  ids, mask, positions = _batch()
  for options in ({"scan_layers": True, "remat": "full"},
                  {"remat": "dots_saveable"}):
    cfg2, model2 = module.from_hf(str(folder), **options)
    assert cfg2 == dataclasses.replace(cfg, **options)
    again = _forward(model2, ids, mask, positions)
    assert _max_diff(again, ours, mask) < 1e-5, (name, options)
    # The same checkpoint tensors come back out of either layout.
    exported = module.to_hf_state_dict(cfg2, model2)
    reference = module.to_hf_state_dict(cfg, model)
    assert exported.keys() == reference.keys()
    assert all(np.array_equal(exported[k], reference[k]) for k in reference)


def test_cached_decode_matches_full_forward(family):
  name, module, _, _, cfg, model, ours, _ = family
  ids, mask, positions = _batch()
  graphdef, state = nnx.split(model)
  _, step = _jitted(graphdef)
  batch, total, prefill = ids.shape[0], ids.shape[1], 6
  cache = module.init_cache(cfg, batch, total, jnp.float32)
  kv_mask = jnp.asarray(mask)  # [B, max_len]: padding slots are known.
  logits, cache = step(state, jnp.asarray(ids[:, :prefill]),
                       jnp.asarray(positions[:, :prefill]), kv_mask, cache,
                       jnp.int32(0))
  pieces = [np.asarray(logits)]
  for t in range(prefill, total):
    logits, cache = step(state, jnp.asarray(ids[:, t:t + 1]),
                         jnp.asarray(positions[:, t:t + 1]), kv_mask, cache,
                         jnp.int32(t))
    pieces.append(np.asarray(logits))
  decoded = np.concatenate(pieces, axis=1)
  assert _max_diff(decoded, ours, mask) < 1e-5, name
  assert cache.k.shape == (cfg.num_layers, batch, total,
                           getattr(cfg, "num_kv_heads", cfg.num_heads),
                           cfg.head_dim)


def test_export_loads_into_transformers(family, tmp_path):
  name, module, _, _, cfg, model, _, theirs = family
  ids, mask, positions = _batch()
  state_dict = module.to_hf_state_dict(cfg, nnx.state(model))
  assert all(v.dtype == np.float32 for v in state_dict.values())
  write_safetensors(state_dict, tmp_path / "model.safetensors")
  (tmp_path / "config.json").write_text(json.dumps(cfg.to_hf()))
  reloaded = transformers.AutoModelForCausalLM.from_pretrained(
      tmp_path, attn_implementation="eager").eval()
  again = _torch_logits(reloaded, ids, mask, positions)
  assert _max_diff(again, theirs, mask) < 1e-5, name


def test_rope_inv_freq_matches_transformers():
  for name in ("llama3", "mistral"):
    cfg = llama.Config.from_hf(_hf_config(name).to_dict())
    rotary = transformers.AutoModelForCausalLM.from_config(
        _hf_config(name)).model.rotary_emb
    np.testing.assert_allclose(llama.rope_inv_freq(cfg),
                               rotary.inv_freq.numpy(), rtol=1e-6)
  linear = dict(_hf_config("llama3").to_dict(),
                rope_scaling={"type": "linear", "factor": 4.0})
  cfg = llama.Config.from_hf(linear)
  assert cfg.rope_scaling == {"rope_type": "linear", "factor": 4.0}
  plain = llama.Config.from_hf(_hf_config("mistral").to_dict())
  np.testing.assert_allclose(llama.rope_inv_freq(cfg),
                             llama.rope_inv_freq(plain) / 4.0)


def _tiny_llama_tensors():
  cfg = llama.Config(vocab_size=VOCAB, hidden_size=16, intermediate_size=32,
                     num_layers=1, num_heads=2, num_kv_heads=1)
  return cfg, llama.to_hf_state_dict(cfg, llama.init_random(cfg, seed=1))


def test_bad_checkpoints_name_file_and_tensor(tmp_path):
  cfg, tensors = _tiny_llama_tensors()
  (tmp_path / "config.json").write_text(json.dumps(cfg.to_hf()))
  weights = tmp_path / "model.safetensors"
  key = "model.layers.0.self_attn.k_proj.weight"

  write_safetensors({k: v for k, v in tensors.items() if k != key}, weights)
  with pytest.raises(CheckpointError, match=f"{weights}.*missing.*{key}"):
    llama.from_hf(str(tmp_path))

  write_safetensors(dict(tensors, **{key: tensors[key][:, :-1]}), weights)
  with pytest.raises(CheckpointError, match=f"{weights}.*{key}.*shape"):
    llama.from_hf(str(tmp_path))

  extra = "model.layers.0.self_attn.q_norm.weight"
  write_safetensors(dict(tensors, **{extra: np.ones(8, np.float32)}), weights)
  with pytest.raises(CheckpointError, match=f"{weights}.*unexpected.*{extra}"):
    llama.from_hf(str(tmp_path))

  with pytest.raises(CheckpointError, match=f"gguf-file.*missing.*{key}"):
    llama.from_state_dict(cfg.to_hf(), {k: v for k, v in tensors.items()
                                        if k != key}, source="gguf-file")


def test_from_state_dict_accepts_unprefixed_names_and_runtime_options():
  cfg, tensors = _tiny_llama_tensors()
  bare = {k.removeprefix("model."): v for k, v in tensors.items()}
  cfg2, model = llama.from_state_dict(cfg.to_hf(), bare, scan_layers=True)
  assert cfg2 == dataclasses.replace(cfg, scan_layers=True)
  exported = llama.to_hf_state_dict(cfg2, model)
  assert all(np.array_equal(exported[k], tensors[k]) for k in tensors)


def test_unsupported_configs_raise_config_error(tmp_path):
  d = _hf_config("llama3").to_dict()
  d["rope_scaling"] = {"rope_type": "yarn", "factor": 4.0}
  with pytest.raises(ConfigError, match="yarn"):
    llama.Config.from_hf(d)
  with pytest.raises(ConfigError, match="remat"):
    llama.Config(remat="sometimes")
  with pytest.raises(ConfigError, match="model_type"):
    llama.Config.from_hf(_hf_config("gpt2").to_dict())
  g = _hf_config("gpt2").to_dict()
  g["scale_attn_by_inverse_layer_idx"] = True
  with pytest.raises(ConfigError, match="scale_attn_by_inverse_layer_idx"):
    gpt2.Config.from_hf(g)
  (tmp_path / "config.json").write_text(json.dumps(d))
  with pytest.raises(ConfigError, match=f"{tmp_path}.*yarn"):
    llama.from_hf(str(tmp_path))


@pytest.mark.parametrize("scan", [False, True])
def test_every_param_has_a_logical_partition_spec(scan):
  for module, cfg in (
      (llama, llama.Config(vocab_size=VOCAB, hidden_size=16,
                           intermediate_size=32, num_layers=2, num_heads=2,
                           num_kv_heads=1, model_type="qwen2",
                           scan_layers=scan)),
      (gpt2, gpt2.Config(vocab_size=VOCAB, hidden_size=16, num_layers=2,
                         num_heads=2, max_position_embeddings=16,
                         scan_layers=scan))):
    state = nnx.state(module.init_random(cfg), nnx.Param)
    specs = dict(nnx.to_flat_state(nnx.get_partition_spec(state)))
    for path, p in nnx.to_flat_state(state):
      spec = specs[path].get_value()
      assert isinstance(spec, jax.sharding.PartitionSpec), path
      assert len(spec) == p.get_value().ndim, (path, spec)
      assert set(spec) <= LOGICAL_NAMES, (path, spec)
      assert any(n not in (None, "layers") for n in spec), (path, spec)
      is_layer = path[0] == "layers"
      assert (spec[0] == "layers") == (scan and is_layer), (path, spec)


def test_scan_remat_gradients_and_dropout_match_unrolled():
  # The training path: same loss and grads (dropout on, same key) whether
  # layers are unrolled or scanned under remat.
  # Llama only: gpt2 runs its layers through the same llama.run_layers, and
  # each grad compile costs seconds.
  module = llama
  cfg = llama.Config(vocab_size=VOCAB, hidden_size=16, intermediate_size=32,
                     num_layers=2, num_heads=4, num_kv_heads=2)
  tensors = module.to_hf_state_dict(cfg, module.init_random(cfg, seed=2))
  ids = jnp.asarray(np.arange(16).reshape(2, 8) % VOCAB, jnp.int32)
  positions = jnp.tile(jnp.arange(8, dtype=jnp.int32), (2, 1))
  results = []
  for layout in ({}, {"scan_layers": True, "remat": "full"}):
    cfg2, model = module.from_state_dict(
        cfg.to_hf(), tensors, attention_dropout=0.1, hidden_dropout=0.1,
        **layout)
    graphdef, state = nnx.split(model)

    def loss(state, key):
      logits, _ = nnx.merge(graphdef, state)(ids, positions, dropout_key=key)
      return jnp.mean(jnp.square(logits))

    grad_fn = jax.jit(jax.value_and_grad(loss))
    value, grads = grad_fn(state, jax.random.key(0))
    assert value != grad_fn(state, jax.random.key(1))[0]  # Dropout is on.
    results.append((float(value), module.to_hf_state_dict(cfg2, grads)))
  (v0, g0), (v1, g1) = results
  assert abs(v0 - v1) < 1e-6
  assert max(np.abs(g0[k] - g1[k]).max() for k in g0) < 1e-7
