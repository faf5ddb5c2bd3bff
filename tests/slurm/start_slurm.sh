#!/usr/bin/env bash
# A real single-node Slurm (Debian's slurm-wlm) on this machine, for the Slurm launcher tests.
# Idempotent: installs the packages if missing, (re)starts munged, slurmctld and slurmd if they are
# not answering, and waits until the node is idle. No systemd needed; everything lives under
# $RADVLM_SLURM_DIR (default /tmp/radvlm-slurm). Needs root (apt-get, munge key, daemons).
#   bash tests/slurm/start_slurm.sh     # start
#   bash tests/slurm/stop_slurm.sh      # stop (by pid files)
set -euo pipefail

state_dir="${RADVLM_SLURM_DIR:-/tmp/radvlm-slurm}"
host="$(hostname -s)"

if scontrol ping 2>/dev/null | grep -q "is UP" && sinfo -h -o %T 2>/dev/null | grep -qE "^(idle|mixed|allocated)"; then
  echo "slurm already running"
  exit 0
fi

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null || ! command -v sbatch >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
fi

mkdir -p "$state_dir"/{state,spool,log} /run/munge /etc/slurm
chown munge:munge /run/munge
if [ ! -s /etc/munge/munge.key ]; then
  mkdir -p /etc/munge
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
chown munge:munge /etc/munge/munge.key
chmod 400 /etc/munge/munge.key

cpus="$(nproc)"
memory_mb="$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)"
cat > /etc/slurm/slurm.conf <<EOF
ClusterName=radvlm-test
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$state_dir/state
SlurmdSpoolDir=$state_dir/spool
SlurmctldPidFile=$state_dir/slurmctld.pid
SlurmdPidFile=$state_dir/slurmd.pid
SlurmctldLogFile=$state_dir/log/slurmctld.log
SlurmdLogFile=$state_dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
JobCompType=jobcomp/filetxt
JobCompLoc=$state_dir/log/jobcomp.log
MinJobAge=600
NodeName=$host CPUs=$cpus RealMemory=$memory_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF

pgrep -x munged >/dev/null || runuser -u munge -- munged
for daemon in slurmctld slurmd; do
  pid_file="$state_dir/$daemon.pid"
  if [ -s "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
    kill "$(cat "$pid_file")"
    sleep 1
  fi
done
slurmctld
slurmd

for _ in $(seq 1 60); do
  if sinfo -h -o %T 2>/dev/null | grep -qE "^(idle|mixed)"; then
    echo "slurm up: $(sinfo -h -o '%N %T %c')"
    exit 0
  fi
  sleep 1
done
echo "slurm did not become idle; see $state_dir/log" >&2
exit 1
