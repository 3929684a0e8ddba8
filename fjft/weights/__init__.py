"""Checkpoint tensor files (safetensors only)."""

from fjft.weights.safetensors_io import read_safetensors
from fjft.weights.safetensors_io import read_safetensors_file
from fjft.weights.safetensors_io import safetensors_files
from fjft.weights.safetensors_io import write_safetensors

__all__ = [
    "read_safetensors",
    "read_safetensors_file",
    "safetensors_files",
    "write_safetensors",
]
