"""The tokenizer the preference tests render pairs with: SmolLM2's, from its GGUF file."""

import pytest


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2_gguf):
  from fjft.models.tokenizer import Tokenizer
  from fjft.weights import gguf_io
  g = gguf_io.read_gguf(smollm2_gguf)
  return Tokenizer.from_gguf(g.tokenizer_meta, g.chat_template)
