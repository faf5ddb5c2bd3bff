#!/usr/bin/env bash
# Stop the test Slurm started by start_slurm.sh, by its pid files (munged is left to the machine).
set -uo pipefail
state_dir="${RADVLM_SLURM_DIR:-/tmp/radvlm-slurm}"
for daemon in slurmd slurmctld; do
  pid_file="$state_dir/$daemon.pid"
  if [ -s "$pid_file" ]; then
    kill "$(cat "$pid_file")" 2>/dev/null && echo "stopped $daemon"
  fi
done
