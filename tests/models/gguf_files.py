"""GGUF files for the tests, written with the gguf package.

`write` takes tensors already in llama.cpp's names; `from_hf_folder` converts a saved HF
folder as llama.cpp's convert_hf_to_gguf does for the architectures the tests use, with
the tensor names from gguf's own name map (not fjft's layouts, which it checks).
"""

import math

import numpy as np


def write(path, arch, tensors, metadata, vocab, *, bos=0, eos=1, pad=None):
  """A GGUF of `arch` with a byte-level BPE vocabulary of `vocab` made-up tokens.

  metadata: GGUFWriter method name (add_block_count, ...) -> its value.
  tensors: name -> float32 array, or (uint8 block bytes, GGMLQuantizationType) written
    as they are (rows of whole blocks).
  """
  import gguf  # here: the test modules skip themselves when it is not installed
  w = gguf.GGUFWriter(str(path), arch)
  for method, value in metadata.items():
    getattr(w, method)(value)
  w.add_tokenizer_model("gpt2")
  w.add_token_list([chr(ord("a") + i % 26) * (1 + i // 26) for i in range(vocab)])
  w.add_token_types([1] * vocab)
  w.add_token_merges(["a a"])  # fjft's BPE reader needs merges; "aa" is token 26
  for add, token in ((w.add_bos_token_id, bos), (w.add_eos_token_id, eos),
                     (w.add_pad_token_id, pad)):
    if token is not None:
      add(token)
  for name, arr in tensors.items():
    if isinstance(arr, tuple):
      w.add_tensor(name, arr[0], raw_dtype=arr[1])
    else:
      w.add_tensor(name, arr)
  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_tensors_to_file()
  w.close()
  return path


def _metadata(arch, c):
  """The keys convert_hf_to_gguf writes for `arch` from HF config `c`."""
  rope = c.rope_parameters or {}
  meta = {"add_block_count": c.num_hidden_layers,
          "add_context_length": c.max_position_embeddings,
          "add_embedding_length": c.hidden_size,
          "add_feed_forward_length": c.intermediate_size,
          "add_head_count": c.num_attention_heads,
          "add_head_count_kv": c.num_key_value_heads,
          "add_layer_norm_rms_eps": c.rms_norm_eps,
          "add_rope_freq_base": rope.get("rope_theta", 10000.0)}
  if arch != "phi3":  # its converter writes its own keys, key_length not among them
    if getattr(c, "head_dim", None) is not None:
      meta.update(add_key_length=c.head_dim, add_value_length=c.head_dim)
    return meta
  head_dim = c.hidden_size // c.num_attention_heads
  meta.update(add_rope_dimension_count=int(head_dim * rope.get("partial_rotary_factor", 1.0)),
              add_rope_scaling_orig_ctx_len=c.original_max_position_embeddings,
              add_sliding_window=c.sliding_window or 0)
  if rope.get("rope_type") == "longrope":
    scale = c.max_position_embeddings / c.original_max_position_embeddings
    meta["add_rope_scaling_attn_factors"] = (
        math.sqrt(1 + math.log(scale) / math.log(c.original_max_position_embeddings))
        if scale > 1.0 else 1.0)
  return meta


def from_hf_folder(folder, path, arch, **metadata):
  """The GGUF (float32) of the HF model saved in `folder`; `metadata` adds to (or
  overrides) the converter's keys, as `write` takes them."""
  import gguf
  import transformers
  from safetensors.numpy import load_file
  c = transformers.AutoConfig.from_pretrained(folder)
  names = gguf.get_tensor_name_map(
      next(a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == arch), c.num_hidden_layers)
  tensors = {}
  for name, arr in load_file(f"{folder}/model.safetensors").items():
    gguf_name = names.get_name(name, try_suffixes=(".weight", ".bias"))
    assert gguf_name is not None, name
    tensors[gguf_name] = arr.astype(np.float32)
  rope = c.rope_parameters or {}
  if rope.get("rope_type") == "longrope":
    tensors["rope_factors_long.weight"] = np.asarray(rope["long_factor"], np.float32)
    tensors["rope_factors_short.weight"] = np.asarray(rope["short_factor"], np.float32)
  return write(path, arch, tensors, {**_metadata(arch, c), **metadata}, c.vocab_size, bos=c.bos_token_id,
               eos=c.eos_token_id, pad=c.pad_token_id)
