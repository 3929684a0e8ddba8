"""Checkpoint files and what they hold: safetensors (read, memory-mapped, written), GGUF,
PEFT adapters, and the one mapping of HF tensors to a family's params (hf_tensors)."""

from fjft.weights.safetensors_io import map_safetensors_file
from fjft.weights.safetensors_io import read_safetensors
from fjft.weights.safetensors_io import read_safetensors_file
from fjft.weights.safetensors_io import safetensors_files
from fjft.weights.safetensors_io import write_safetensors

__all__ = [
    "map_safetensors_file",
    "read_safetensors",
    "read_safetensors_file",
    "safetensors_files",
    "write_safetensors",
]
