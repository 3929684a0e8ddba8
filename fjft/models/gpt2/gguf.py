"""How llama.cpp's GGUF files hold GPT-2: tensor names, the config from metadata, and
the weights it stores transposed from HF's Conv1D (and its tied head, written twice)."""

from __future__ import annotations

from typing import Any

import numpy as np

from fjft.errors import CheckpointError
from fjft.models.family import GGUFLayout
from fjft.weights.gguf_meta import Meta, f32

_TOP = {"token_embd": "transformer.wte", "position_embd": "transformer.wpe",
        "output_norm": "transformer.ln_f", "output": "lm_head"}
_BLOCK = {"attn_norm": "ln_1", "attn_qkv": "attn.c_attn", "attn_output": "attn.c_proj",
          "ffn_norm": "ln_2", "ffn_up": "mlp.c_fc", "ffn_down": "mlp.c_proj"}
# llama.cpp's converter stores these weights transposed from HF's Conv1D [in, out].
_CONV1D = tuple(f".{part}.weight" for part in ("attn.c_attn", "attn.c_proj", "mlp.c_fc",
                                               "mlp.c_proj"))


def _to_hf(meta: Meta, model_type: str, tensors: dict[str, np.ndarray]) -> dict[str, Any]:
  for name in tensors:
    if name.endswith(_CONV1D) and tensors[name].ndim == 2:
      tensors[name] = np.ascontiguousarray(tensors[name].T)
  if "lm_head.weight" in tensors:
    # llama.cpp writes GPT-2's tied embedding twice; HF GPT-2 is always tied.
    if not np.array_equal(tensors["lm_head.weight"], tensors["transformer.wte.weight"]):
      raise CheckpointError(f"{meta.path}: a GPT-2 whose output.weight differs from"
                            " token_embd.weight (untied), which HF GPT-2 cannot hold")
    del tensors["lm_head.weight"]
  arch = meta.arch
  hidden = int(meta.scalar(f"{arch}.embedding_length"))
  return {
      "model_type": model_type,
      "vocab_size": tensors["transformer.wte.weight"].shape[0],
      "n_embd": hidden,
      "n_inner": int(meta.scalar(f"{arch}.feed_forward_length", 4 * hidden)),
      "n_layer": int(meta.scalar(f"{arch}.block_count")),
      "n_head": int(meta.scalar(f"{arch}.attention.head_count")),
      "n_positions": int(meta.scalar(f"{arch}.context_length")),
      "layer_norm_epsilon": f32(meta.scalar(f"{arch}.attention.layer_norm_epsilon")),
      "activation_function": "gelu_new",
      "tie_word_embeddings": True,
  }


GGUF = GGUFLayout(archs={"gpt2": "gpt2"}, top=_TOP, block_prefix="transformer.h.{}.",
                  block=_BLOCK, to_hf=_to_hf)
