"""The ELECTRA family (the discriminator): HF model_type "electra" in Flax NNX, with HF
weights I/O.

BERT's encoder with embeddings of width embedding_size, projected to hidden_size by
`embeddings_project` when the two differ, and no pooler. A family of its own (not a BERT
model_type) for those two differences; its layers are fjft.models.bert.modules.Layer and
its tensor names BERT's under the "electra." prefix, so the param tree is BERT's plus

  embeddings_project.{kernel,bias}   [E, H]  (electra.embeddings_project.*), only if E != H

and without the pooler (embedding tables are [rows, E]). The Model's second output is the
[CLS] state; HF's classification head on it is dense + GELU + out_proj
(fjft.tasks.classify.model builds the same head).
"""

from __future__ import annotations

from fjft.models import build
from fjft.models.electra.config import Config
from fjft.models.electra.modules import Model
from fjft.models.electra.tensors import (canonical_name, hf_linear_names, hf_tensors,
                                         ignorable, init_std)

KIND = "encoder"
MODEL_TYPES = ("electra",)
HF_WEIGHT_IN_FIRST = False
GGUF = None

from_hf, from_state_dict, init_random, to_hf_state_dict = build.weight_functions(__name__)

__all__ = ["Config", "GGUF", "HF_WEIGHT_IN_FIRST", "KIND", "MODEL_TYPES", "Model",
           "canonical_name", "from_hf", "from_state_dict", "hf_linear_names", "hf_tensors",
           "ignorable", "init_std", "init_random", "to_hf_state_dict"]
