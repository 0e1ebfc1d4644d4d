#!/usr/bin/env bash
# A single-node Slurm cluster for tests and benchmarks, without systemd:
# Debian's slurm-wlm (22.05) and munge, every file in one scratch directory.
#
#   scripts/slurm-cluster.sh start DIR   # idempotent; prints the SLURM_CONF line
#   scripts/slurm-cluster.sh stop DIR    # idempotent; stops by pid files only
#   scripts/slurm-cluster.sh env DIR     # prints `export SLURM_CONF=DIR/slurm.conf`
#
# Commands (sinfo, sbatch, bgtask's watcher) find the cluster through
# SLURM_CONF=DIR/slurm.conf. Daemons are stopped by the pid in their pid file
# (never by name: other clusters or tests may run on the same machine). A
# failed start stops whatever it started. Needs root (slurmd runs jobs as any
# user); installs slurm-wlm and munge with apt when they are missing.
set -euo pipefail

usage() { echo "usage: $0 start|stop|env DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1
mkdir -p "$2"
dir=$(cd "$2" && pwd)
conf=$dir/slurm.conf
export SLURM_CONF=$conf

# Stops the daemon whose pid file is $1: TERM, then KILL after 10 s. A pid
# file whose process is gone (or is no longer that daemon) is removed.
stop_pidfile() {
  local file=$1 name=$2 pid
  [ -s "$file" ] || return 0
  pid=$(cat "$file")
  if [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] && grep -q "$name" "/proc/$pid/comm"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
      [ -e "/proc/$pid" ] || break
      sleep 0.1
    done
    if [ -e "/proc/$pid" ]; then kill -KILL "$pid" 2>/dev/null || true; fi
  fi
  rm -f "$file"
}

stop() {
  stop_pidfile "$dir/slurmd.pid" slurmd
  stop_pidfile "$dir/slurmctld.pid" slurmctld
  stop_pidfile "$dir/munge/munged.pid" munged
}

running() { # $1 pid file, $2 comm
  [ -s "$1" ] && grep -q "$2" "/proc/$(cat "$1")/comm" 2>/dev/null
}

install_if_missing() {
  if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    echo "installing slurm-wlm and munge" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null ||
      { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null; }
  fi
}

write_config() {
  local host cpus mem
  host=$(hostname -s)
  # More CPUs than the machine has: tests run many small jobs at once
  # (config_overrides lets slurmd accept it).
  cpus=$(( $(nproc) > 64 ? $(nproc) : 64 ))
  # Leave 10% of the memory to the machine.
  mem=$(awk '/MemTotal/ { printf "%d", $2 / 1024 * 0.9 }' /proc/meminfo)
  mkdir -p "$dir/state" "$dir/spool" "$dir/log" "$dir/munge"
  cat >"$conf.new" <<EOF
ClusterName=bgtask-test
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerParameters=batch_sched_delay=0
SlurmdParameters=config_overrides
ReturnToService=2
KillWait=5
MinJobAge=300
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/log/jobcomp.txt
AccountingStorageType=accounting_storage/none
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldPort=${BGTASK_SLURMCTLD_PORT:-6817}
SlurmdPort=${BGTASK_SLURMD_PORT:-6818}
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  mv "$conf.new" "$conf"
}

start() {
  install_if_missing
  write_config
  chown munge:munge "$dir/munge"
  chmod 0711 "$dir/munge"
  if ! running "$dir/munge/munged.pid" munged; then
    runuser -u munge -- munged --socket="$dir/munge/munge.socket" \
      --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" \
      --seed-file="$dir/munge/munged.seed"
  fi
  if ! running "$dir/slurmctld.pid" slurmctld; then
    slurmctld -c -f "$conf"
  fi
  if ! running "$dir/slurmd.pid" slurmd; then
    slurmd -f "$conf"
  fi
  # Conditions, not sleeps: the node reports idle, and a job step runs.
  local deadline=$((SECONDS + 60)) state=""
  while [ $SECONDS -lt $deadline ]; do
    state=$(sinfo -h -N -o %t 2>/dev/null || true)
    [ "$state" = idle ] && break
    sleep 0.2
  done
  if [ "$state" != idle ]; then
    echo "slurm-cluster: the node did not become idle (state: ${state:-none}); see $dir/log" >&2
    return 1
  fi
  timeout 60 srun -Q true
  echo "export SLURM_CONF=$conf"
}

case $cmd in
  start)
    trap 'stop' ERR
    start
    ;;
  stop) stop ;;
  env) echo "export SLURM_CONF=$conf" ;;
  *) usage ;;
esac
