"""Gemma 2 and Gemma 3 GGUF files (llama.cpp's names, norms stored as 1 + w) read as
transformers' GGUF loader reads them: the same tensors, config and logits."""

import numpy as np
import pytest

from fjft.models import gemma, registry
from fjft.weights import gguf_io
from tests.models import gguf_files
from tests.models.test_decoder_parity import VOCAB, _batch, _forward, _max_diff, _torch_logits

torch = pytest.importorskip("torch", reason="GGUF parity needs torch")
transformers = pytest.importorskip("transformers", reason="GGUF parity needs transformers")
pytest.importorskip("gguf")

HIDDEN, HEADS, KV_HEADS, HEAD_DIM, FFN, LAYERS = 32, 2, 1, 256, 64, 2
_BLOCK = {v: k for k, v in gemma.GGUF.block.items()}


def _gguf_name(hf: str) -> str:
  if hf.startswith("model.layers."):
    i, rest = hf.removeprefix("model.layers.").split(".", 1)
    part, kind = rest.rsplit(".", 1)
    return f"blk.{i}.{_BLOCK[part]}.{kind}"
  top = {v: k for k, v in gemma.GGUF.top.items()}
  part, kind = hf.rsplit(".", 1)
  return f"{top[part]}.{kind}"


def _write(path, arch, rng):
  hd, q, kv = HEAD_DIM, HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM
  shapes = {"model.embed_tokens.weight": (VOCAB, HIDDEN), "model.norm.weight": (HIDDEN,)}
  for i in range(LAYERS):
    p = f"model.layers.{i}."
    for norm in ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                 "post_feedforward_layernorm"):
      shapes[p + norm + ".weight"] = (HIDDEN,)
    shapes.update({p + "self_attn.q_proj.weight": (q, HIDDEN),
                   p + "self_attn.k_proj.weight": (kv, HIDDEN),
                   p + "self_attn.v_proj.weight": (kv, HIDDEN),
                   p + "self_attn.o_proj.weight": (HIDDEN, q),
                   p + "mlp.gate_proj.weight": (FFN, HIDDEN), p + "mlp.up_proj.weight": (FFN, HIDDEN),
                   p + "mlp.down_proj.weight": (HIDDEN, FFN)})
    if arch == "gemma3":
      shapes.update({p + "self_attn.q_norm.weight": (hd,), p + "self_attn.k_norm.weight": (hd,)})
  meta = {"add_block_count": LAYERS, "add_context_length": 128, "add_embedding_length": HIDDEN,
          "add_feed_forward_length": FFN, "add_head_count": HEADS,
          "add_head_count_kv": KV_HEADS, "add_key_length": HEAD_DIM,
          "add_value_length": HEAD_DIM, "add_layer_norm_rms_eps": 1e-6,
          "add_rope_freq_base": 10000.0, "add_sliding_window": 4}
  if arch == "gemma2":
    meta.update(add_attn_logit_softcapping=50.0, add_final_logit_softcapping=30.0)
  # llama.cpp's 1 + w for the norms, w about 0
  tensors = {_gguf_name(name): ((1.0 if name.endswith("norm.weight") else 0.0)
                                + 0.2 * rng.standard_normal(shape)).astype(np.float32)
             for name, shape in shapes.items()}
  gguf_files.write(path, arch, tensors, meta, VOCAB, bos=2, eos=1)


@pytest.mark.parametrize("arch", ["gemma2", "gemma3"])
def test_gguf_matches_transformers_gguf_loader(arch, tmp_path):
  path = tmp_path / f"{arch}.gguf"
  _write(path, arch, np.random.default_rng(0))
  assert registry.resolve(str(path)).family is gemma
  ours = gguf_io.read_gguf(path)
  hf = transformers.AutoModelForCausalLM.from_pretrained(
      str(tmp_path), gguf_file=path.name, dtype=torch.float32, attn_implementation="eager"
  ).eval()
  theirs = {k: v.detach().numpy() for k, v in hf.state_dict().items()}
  theirs.pop("lm_head.weight")  # tied
  assert sorted(ours.tensors) == sorted(theirs)
  for name, w in ours.tensors.items():
    np.testing.assert_array_equal(w, theirs[name], err_msg=name)
  cfg, model = gemma.from_state_dict(ours.hf_config, ours.tensors, source=str(path))
  assert cfg.model_type == hf.config.model_type == ("gemma2" if arch == "gemma2"
                                                    else "gemma3_text")
  hf_cfg = gemma.Config.from_hf(hf.config.to_dict())
  for field in ("num_layers", "num_heads", "num_kv_heads", "head_dim", "sliding_window",
                "layer_types", "rope_theta", "rope_local_theta", "query_pre_attn_scalar",
                "attn_logit_softcapping", "final_logit_softcapping", "tie_word_embeddings"):
    assert getattr(cfg, field) == getattr(hf_cfg, field), field
  ids, mask, positions = _batch()
  diff = _max_diff(_forward(model, ids, mask, positions),
                   _torch_logits(hf, ids, mask, positions), mask)
  assert diff < 1e-4, (arch, diff)
