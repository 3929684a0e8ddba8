"""fjft.models.llama_variants beyond the parity table (tests/models/test_decoder_parity.py
runs Qwen3, OLMo 2, Granite and SmolLM3 against transformers): the config options read,
refused and written back, the registry, and the params' logical axes."""

import jax
import pytest
from flax import nnx

from fjft.errors import ConfigError
from fjft.models import llama_variants, registry
from fjft.models.hf_export import HF_CAUSAL_LM

_SMALL = dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=4,
              num_attention_heads=2, num_key_value_heads=1)


def _cfg(model_type, **extra):
  return llama_variants.Config.from_hf(dict(_SMALL, model_type=model_type, **extra))


def test_registered_with_their_causal_lm_classes():
  for model_type, cls in (("qwen3", "Qwen3ForCausalLM"), ("olmo2", "Olmo2ForCausalLM"),
                          ("granite", "GraniteForCausalLM"),
                          ("smollm3", "SmolLM3ForCausalLM")):
    assert registry.FAMILIES[model_type] is llama_variants
    assert HF_CAUSAL_LM[model_type] == cls
    cfg = _cfg(model_type)
    assert cfg.to_hf()["architectures"] == [cls]
    assert llama_variants.Config.from_hf(cfg.to_hf()) == cfg


def test_options_read_as_transformers_derives_them():
  assert _cfg("smollm3").rope_layers == (True, True, True, False)  # interval 4
  assert _cfg("smollm3", no_rope_layer_interval=2).rope_layers == (True, False) * 2
  assert _cfg("smollm3", no_rope_layers=[0, 1, 1, 1, 1]).rope_layers == (False,) + (True,) * 3
  assert _cfg("smollm3").rope_theta == 2000000.0  # SmolLM3's default base
  assert _cfg("qwen3").rope_theta == 10000.0
  assert _cfg("qwen3", rope_theta=5.0e5).rope_theta == 5.0e5
  assert _cfg("qwen3").qk_norm == "head" and _cfg("olmo2").qk_norm == "full"
  assert _cfg("olmo2").post_norms and not _cfg("granite").post_norms
  granite = _cfg("granite", attention_multiplier=0.25, logits_scaling=2.0)
  assert (granite.attention_scale, granite.logits_scaling) == (0.25, 2.0)
  assert _cfg("granite").attention_scale == 1.0  # transformers' default, not D ** -0.5
  assert _cfg("qwen3").attention_scale == 8 ** -0.5
  # use_sliding_window false: the window field is inert, as in transformers.
  assert _cfg("qwen3", use_sliding_window=False, sliding_window=4096).model_type == "qwen3"


@pytest.mark.parametrize("model_type, extra, match", [
    ("qwen3", {"use_sliding_window": True, "sliding_window": 8}, "sliding"),
    ("qwen3", {"layer_types": ["sliding_attention"] * 4}, "layer_types"),
    ("smollm3", {"use_sliding_window": True, "sliding_window": 8}, "sliding"),
    ("smollm3", {"no_rope_layers": [1, 0]}, "no_rope_layers"),
    ("smollm3", {"no_rope_layer_interval": 0}, "no_rope_layer_interval"),
    ("olmo2", {"clip_qkv": 8.0}, "clip_qkv"),
    ("granite", {"hidden_act": "gelu"}, "hidden_act"),
    ("qwen3", {"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "yarn"),
    ("qwen3", {"mlp_bias": True}, None),  # not a Qwen3 field: ignored, not an error
    ("llama", {}, "model_type"),
])
def test_unsupported_options_raise_config_error_naming_them(model_type, extra, match):
  if match is None:
    assert not _cfg(model_type, **extra).mlp_bias
    return
  with pytest.raises(ConfigError, match=match):
    _cfg(model_type, **extra)


def test_options_of_other_model_types_are_refused():
  with pytest.raises(ConfigError, match="granite options"):
    llama_variants.Config(model_type="qwen3", logits_scaling=2.0)
  with pytest.raises(ConfigError, match="smollm3 option"):
    llama_variants.Config(model_type="olmo2", num_layers=2, rope_layers=(True, False))
  with pytest.raises(ConfigError, match="mlp_bias"):
    llama_variants.Config(model_type="olmo2", mlp_bias=True)


@pytest.mark.parametrize("scan", [False, True])
@pytest.mark.parametrize("model_type", ["qwen3", "olmo2", "granite", "smollm3"])
def test_every_param_has_a_logical_partition_spec(model_type, scan):
  names = {"vocab", "embed", "heads", "kv_heads", "mlp", "layers", None}
  cfg = llama_variants.Config.from_hf(dict(_SMALL, model_type=model_type), scan_layers=scan)
  state = nnx.state(llama_variants.init_random(cfg), nnx.Param)
  specs = dict(nnx.to_flat_state(nnx.get_partition_spec(state)))
  for path, p in nnx.to_flat_state(state):
    spec = specs[path].get_value()
    assert isinstance(spec, jax.sharding.PartitionSpec), path
    assert len(spec) == p.get_value().ndim and set(spec) <= names, (path, spec)
    assert (spec[0] == "layers") == (scan and path[0] == "layers"), (path, spec)
