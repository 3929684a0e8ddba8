#!/usr/bin/env bash
# One process on this machine: the same as `python -m fjft.train <args>`.
#
#   launch/local.sh --config=experiments/quickstart.py --workdir=runs [--config.<field>=<v> ...]
#
# The mesh spans this process's devices (every GPU, or one CPU). Set DRY_RUN=1 to print the
# command instead of running it. PYTHON picks the interpreter (default: python).
set -euo pipefail
cmd=("${PYTHON:-python}" -m fjft.train "$@")
if [[ "${DRY_RUN:-0}" != 0 ]]; then
  printf '%q ' "${cmd[@]}"; echo
  exit 0
fi
exec "${cmd[@]}"
