#!/usr/bin/env bash
# One run over every worker of a Cloud TPU VM slice: the same command on each worker,
# through gcloud's ssh; JAX finds the slice's layout from the TPU metadata.
#
#   TPU_NAME=my-v5p-32 ZONE=us-east5-a launch/tpu_vm.sh --config=experiments/x.py --workdir=/mnt/shared/runs
#
# Run it from a machine with gcloud set up. FJFT_DIR is the fjft checkout on the workers
# (default ~/fjft; install it there first, e.g. with --worker=all `pip install -e .`), PROJECT
# the GCP project (default: gcloud's). The workdir must be one file system every worker sees
# (Filestore, an NFS or gcsfuse mount): Orbax writes one checkpoint from all of them.
# DRY_RUN=1 prints the gcloud command instead of running it.
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME to the TPU VM's name}"
: "${ZONE:?set ZONE to the TPU VM's zone}"
remote="cd ${FJFT_DIR:-~/fjft} && ${PYTHON:-python3} -m fjft.train --distributed$(printf ' %q' "$@")"
cmd=(gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all
     ${PROJECT:+--project="$PROJECT"} --command="$remote")
if [[ "${DRY_RUN:-0}" != 0 ]]; then
  printf '%q ' "${cmd[@]}"; echo
  exit 0
fi
exec "${cmd[@]}"
