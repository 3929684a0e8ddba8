#!/usr/bin/env bash
# NUM_PROCESSES processes of one run on this machine, joined by JAX's distributed runtime
# as the hosts of a cluster would be: to try a multi-host run without a cluster.
#
#   NUM_PROCESSES=2 launch/multihost_local.sh --config=experiments/quickstart.py --workdir=runs
#
# Each process drives DEVICES_PER_PROCESS CPU devices (default 1), so the mesh has
# NUM_PROCESSES x DEVICES_PER_PROCESS devices; the processes talk over gloo on localhost.
# Process 0 prints and writes the run directory; the others print only errors. Results
# match a one-process run of the same config (launch/local.sh) up to float rounding.
# DRY_RUN=1 prints the commands instead of running them. COORDINATOR_PORT picks the
# coordinator's port (default: a free one).
set -euo pipefail
n="${NUM_PROCESSES:-2}"
per="${DEVICES_PER_PROCESS:-1}"
python="${PYTHON:-python}"
port="${COORDINATOR_PORT:-$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
# One machine's accelerator cannot be split between processes here: CPU devices only.
env=(JAX_PLATFORMS=cpu "XLA_FLAGS=${XLA_FLAGS:-} --xla_force_host_platform_device_count=$per"
     "FJFT_COORDINATOR=127.0.0.1:$port" "FJFT_NUM_PROCESSES=$n")
if [[ "${DRY_RUN:-0}" != 0 ]]; then
  for ((i = 0; i < n; i++)); do
    printf '%q ' env "${env[@]}" "FJFT_PROCESS_ID=$i" "$python" -m fjft.train --distributed "$@"
    echo "&"
  done
  echo wait
  exit 0
fi
pids=()
for ((i = 0; i < n; i++)); do
  # Each in its own session: a Ctrl-C in the terminal reaches this script only, which
  # passes it on once, as SIGTERM (a second signal tells fjft to stop without saving).
  setsid env "${env[@]}" "FJFT_PROCESS_ID=$i" "$python" -m fjft.train --distributed "$@" &
  pids+=($!)
done
# Ctrl-C or SIGTERM: every process saves a checkpoint at the same step, then exits
# (run the same command again to resume).
stopping=0
trap 'stopping=1; kill -TERM "${pids[@]}" 2>/dev/null' INT TERM
set +e
status=0
left=$n
while ((left > 0)); do
  finished=""
  wait -n -p finished
  rc=$?
  [[ -z "${finished:-}" ]] && continue   # woken by the trap, not by a process's exit
  left=$((left - 1))
  if ((rc != 0)); then
    ((status == 0)) && status=$rc
    # One process failed on its own: the others would wait for it in a collective.
    ((stopping)) || kill -KILL "${pids[@]}" 2>/dev/null
  fi
done
exit "$status"
