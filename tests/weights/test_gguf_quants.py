"""GGUF tensor types: every type the gguf package dequantises loads in fjft with the
package's own values, and a K-quant Llama gives transformers' own GGUF loader's logits."""

import numpy as np
import pytest

from fjft.errors import CheckpointError
from fjft.weights import gguf_io

gguf = pytest.importorskip("gguf")

from fjft.weights import gguf_quant  # noqa: E402  (imports gguf)
from tests.weights.test_gguf import _tiny_gguf, _tiny_tensors, _write_tiny_lm  # noqa: E402

Q = gguf.GGMLQuantizationType


def _package_dequantises(qtype):
  """Whether gguf.quants.dequantize knows qtype, asked of the package directly."""
  try:
    gguf.quants.dequantize(np.zeros((1, gguf.GGML_QUANT_SIZES[qtype][1]), np.uint8), qtype)
  except NotImplementedError:
    return False
  return True


PACKAGE_TYPES = [q.name for q in Q if _package_dequantises(q)]
OTHER_TYPES = [q.name for q in Q if not _package_dequantises(q)]


def _random_rows(rng, qtype, n_rows, blocks_per_row):
  """Random bytes: n_rows rows of whole blocks of qtype (uint8, as the writer takes)."""
  block_bytes = gguf.GGML_QUANT_SIZES[qtype][1]
  return rng.integers(0, 256, (n_rows, blocks_per_row * block_bytes), dtype=np.uint8)


def _theirs(raw, qtype):
  # Random bytes make some fp16/e8m0 scales inf or NaN: compared NaN-equal, unwarned.
  with np.errstate(all="ignore"):
    return np.asarray(gguf.quants.dequantize(raw, qtype))


def test_fjft_loads_the_types_the_package_dequantises():
  assert gguf_quant.supported_types() == tuple(PACKAGE_TYPES)
  # what downloads mostly are: K-quants, I-quants, and the float and legacy types
  assert {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q5_K", "Q6_K", "Q2_K",
          "Q3_K", "IQ4_XS", "IQ2_XXS"} <= set(PACKAGE_TYPES)


@pytest.mark.parametrize("type_name", PACKAGE_TYPES)
def test_dequantize_equals_the_package(type_name, monkeypatch):
  qtype = Q[type_name]
  row = 3 * gguf.GGML_QUANT_SIZES[qtype][0]  # three blocks
  raw = _random_rows(np.random.default_rng(0), qtype, 10, 3).reshape(5, 2, -1)
  theirs = _theirs(raw, qtype)
  # fjft decodes a few rows at a time: here 3, 3, 3 and 1 of the 10.
  monkeypatch.setattr(gguf_quant, "_CHUNK_ELEMENTS", 3 * row + 1)
  with np.errstate(all="ignore"):
    ours = gguf_quant.dequantize(raw.reshape(-1), type_name, (5, 2, row))
  assert ours.dtype == np.float32 and ours.shape == theirs.shape == (5, 2, row)
  assert not np.shares_memory(ours, raw)  # no view into a memory-mapped file
  np.testing.assert_array_equal(ours, theirs)  # NaNs where the package has them


@pytest.mark.parametrize("type_name", PACKAGE_TYPES)
def test_every_type_loads_from_a_file(type_name, tmp_path):
  # A tiny Llama whose embedding is random bytes of the type; 256-wide rows are a
  # whole number of blocks of every type.
  qtype = Q[type_name]
  tensors, dims = _tiny_tensors("qwen2", np.random.default_rng(2), hidden=256, heads=4,
                                kv_heads=2, ffn=256, vocab=40)
  tensors = {k: v for k, v in tensors.items() if not k.endswith(".bias")}
  blocks = 256 // gguf.GGML_QUANT_SIZES[qtype][0]
  raw = _random_rows(np.random.default_rng(3), qtype, 40, blocks)
  tensors["token_embd.weight"] = (raw, qtype)
  path = tmp_path / f"{type_name}.gguf"
  _write_tiny_lm(path, "llama", tensors, **dims)
  with np.errstate(all="ignore"):
    ours = gguf_io.read_gguf(path)
  embed = ours.tensors["model.embed_tokens.weight"]
  assert embed.dtype == np.float32 and embed.shape == (40, 256)  # HF [vocab, hidden]
  np.testing.assert_array_equal(embed, _theirs(raw, qtype))
  np.testing.assert_array_equal(ours.tensors["model.norm.weight"], tensors["output_norm.weight"])


@pytest.mark.parametrize("type_name", OTHER_TYPES)  # none: skipped, as pytest does
def test_a_type_the_package_cannot_dequantise_is_named(type_name, tmp_path):
  path = _tiny_gguf(tmp_path / f"{type_name}.gguf", Q[type_name])
  with pytest.raises(CheckpointError) as e:
    gguf_io.read_gguf(path)
  msg = str(e.value)
  assert str(path) in msg and "'token_embd.weight'" in msg and f"type {type_name}," in msg
  assert "gguf package" in msg and "Q4_K" in msg  # what it can load instead


# ------------------------- a K-quant Llama against transformers' GGUF loader ---

# Scales chosen for weights of about 0.05, as a trained model's: (byte offset of the
# fp16 d, of the fp16 dmin or None) and the largest d, per K-quant block layout.
#   Q4_K: d, dmin, 12 bytes of 6-bit scales/mins, 128 of 4-bit q: d*sc*q - dmin*m
#   Q5_K: as Q4_K with 32 bytes of 5th bits:                     d*sc*q - dmin*m
#   Q6_K: 128 + 64 bytes of 6-bit q, 16 int8 scales, then d:     d*sc*(q - 32)
_K_SCALES = {Q.Q4_K: ((0, 2), 1e-4), Q.Q5_K: ((0, 2), 5e-5), Q.Q6_K: ((208, None), 2e-5)}


def _k_quant(rng, qtype, n_rows, n_cols):
  """Random (rows of blocks, qtype) with small finite scales, a valid K-quant tensor."""
  raw = _random_rows(rng, qtype, n_rows, n_cols // 256)
  blocks = raw.reshape(-1, gguf.GGML_QUANT_SIZES[qtype][1])
  (d_at, dmin_at), d_max = _K_SCALES[qtype]
  for at, top in ((d_at, d_max), (dmin_at, 10 * d_max)):
    if at is not None:
      blocks[:, at:at + 2] = rng.uniform(0.2 * top, top, (len(blocks), 1)).astype(
          np.float16).view(np.uint8)
  return raw, qtype


def _permute(w, n_heads):
  """llama.cpp's own Q/K row permutation (convert_hf_to_gguf.py's LlamaModel.permute):
  an HF tensor back in the file's order."""
  return w.reshape(n_heads, 2, w.shape[0] // n_heads // 2, *w.shape[1:]).swapaxes(
      1, 2).reshape(w.shape)


@pytest.mark.slow
def test_k_quant_llama_matches_transformers(tmp_path):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  import jax.numpy as jnp

  from fjft.models import build, llama
  from fjft.weights import hf_tensors

  rng = np.random.default_rng(4)
  heads, kv_heads = 4, 2
  tensors, dims = _tiny_tensors("qwen2", rng, hidden=256, heads=heads, kv_heads=kv_heads,
                                ffn=512, vocab=300)
  tensors = {k: v for k, v in tensors.items() if not k.endswith(".bias")}  # Llama: none
  # Every 2-D weight a K-quant, the three types in turn (norms stay F32, as llama.cpp
  # writes them).
  kinds = [Q.Q4_K, Q.Q5_K, Q.Q6_K]
  matrices = sorted(k for k, v in tensors.items() if v.ndim == 2)
  for i, name in enumerate(matrices):
    tensors[name] = _k_quant(rng, kinds[i % 3], *tensors[name].shape)
  assert {tensors[n][1] for n in matrices} == set(kinds)
  path = tmp_path / "k_quants.gguf"
  _write_tiny_lm(path, "llama", tensors, **dims)

  # fjft's tensors are the package's dequantised bytes, Q/K rows put back in HF order.
  ours = gguf_io.read_gguf(path)
  hf_names = {"token_embd.weight": "model.embed_tokens.weight",
              "output.weight": "lm_head.weight", "output_norm.weight": "model.norm.weight"}
  for i in range(2):
    for g, h in (("attn_q", "self_attn.q_proj"), ("attn_k", "self_attn.k_proj"),
                 ("attn_v", "self_attn.v_proj"), ("attn_output", "self_attn.o_proj"),
                 ("ffn_gate", "mlp.gate_proj"), ("ffn_up", "mlp.up_proj"),
                 ("ffn_down", "mlp.down_proj"), ("attn_norm", "input_layernorm"),
                 ("ffn_norm", "post_attention_layernorm")):
      hf_names[f"blk.{i}.{g}.weight"] = f"model.layers.{i}.{h}.weight"
  assert sorted(ours.tensors) == sorted(hf_names.values())
  for name, value in tensors.items():
    expected = gguf.quants.dequantize(*value) if isinstance(value, tuple) else value
    got = ours.tensors[hf_names[name]]
    if ".attn_q." in name or ".attn_k." in name:
      got = _permute(got, heads if ".attn_q." in name else kv_heads)
    assert got.dtype == np.float32 and got.shape == expected.shape, name
    np.testing.assert_array_equal(got, expected, err_msg=name)

  # transformers' GGUF loader (it dequantises with the same package) holds the same
  # tensors, and its forward pass gives fjft's logits.
  model = transformers.AutoModelForCausalLM.from_pretrained(
      str(tmp_path), gguf_file=path.name, dtype=torch.float32).eval()
  theirs = {k: v.detach().numpy() for k, v in model.state_dict().items()}
  assert sorted(theirs) == sorted(ours.tensors)
  for name, w in ours.tensors.items():
    np.testing.assert_array_equal(w, theirs[name], err_msg=name)
  # The model as fjft.models.registry.load builds it from a GGUF (the file's stand-in
  # tokenizer, with no merges, is not one fjft can load).
  cfg = build.make_config(llama, ours.hf_config, str(path), {})
  ours_model = build.from_tensors(llama, cfg, hf_tensors.Tensors(ours.tensors, {}, str(path)))
  ids = np.random.default_rng(5).integers(0, 300, (2, 12))
  logits, _ = ours_model(jnp.asarray(ids, jnp.int32),
                         jnp.broadcast_to(jnp.arange(12, dtype=jnp.int32), (2, 12)))
  with torch.no_grad():
    expected = model(torch.tensor(ids)).logits.numpy()
  assert np.abs(expected).max() > 0.1  # not a degenerate model
  assert np.max(np.abs(np.asarray(logits) - expected)) < 1e-4
