#!/usr/bin/env bash
# A one-node Slurm on this machine for the Slurm tests (tests/test_slurm.py), without systemd: install
# slurm-wlm and munge from the system's packages when missing, write a slurm.conf for this host's CPUs and
# memory, start munged, slurmctld and slurmd by hand, and wait until `sinfo` shows the node idle.
# Idempotent: a running, idle cluster is left as it is. Root only (it installs packages and starts daemons).
# Prints one line and exits non-zero when it cannot.
set -uo pipefail

STATE=${ATEBENCH_SLURM_STATE:-/var/spool/atebench-slurm}  # StateSaveLocation, slurmd's spool, logs
CONF=/etc/slurm/slurm.conf

die() { echo "setup-slurm: $*"; exit 1; }
node_state() { sinfo --noheader --Node -o '%t' 2>/dev/null | head -n1; }

if [ "$(id -u)" != 0 ]; then die "needs root (it installs slurm-wlm and starts daemons)"; fi
if command -v sinfo >/dev/null 2>&1 && [ "$(node_state)" = idle ]; then
  echo "setup-slurm: already running, node $(sinfo --noheader --Node -o %N | head -n1) idle"; exit 0
fi

if ! command -v slurmctld >/dev/null 2>&1 || ! command -v slurmd >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null) \
    || die "apt-get install slurm-wlm munge failed"
fi

# munge: the key the packages made (or a new one), a socket directory, the daemon.
mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
[ -s /etc/munge/munge.key ] || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
chmod 0700 /etc/munge && chmod 0400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  runuser -u munge -- /usr/sbin/munged --force || die "munged did not start (see /var/log/munge/munged.log)"
  for _ in $(seq 20); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.5; done
  munge -n | unmunge >/dev/null 2>&1 || die "munged runs but a credential does not round-trip"
fi

# slurm.conf: this host as controller and only node, its CPUs, 90 % of its memory (slurmd drains a node
# that reports less than configured), process tracking without cgroups, no accounting database.
HOST=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(($(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10))
mkdir -p /etc/slurm "$STATE/ctld" "$STATE/d" "$STATE/log"
cat >"$CONF" <<EOF
# Written by .ci/setup-slurm.sh: a one-node test cluster for atebench's Slurm tests.
ClusterName=atebench
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=600
KillWait=5
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=60
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF

if ! scontrol ping 2>/dev/null | grep -q UP; then
  /usr/sbin/slurmctld || die "slurmctld did not start (see $STATE/log/slurmctld.log)"
fi
if ! pgrep -x slurmd >/dev/null; then
  /usr/sbin/slurmd || die "slurmd did not start (see $STATE/log/slurmd.log)"
fi
for _ in $(seq 60); do
  state=$(node_state)
  [ "$state" = idle ] && break
  case "$state" in down*|drain*) scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 ;; esac
  sleep 1
done
[ "$(node_state)" = idle ] || die "node $HOST is '$(node_state)', not idle, after 60 s (see $STATE/log/)"
echo "setup-slurm: node $HOST idle ($CPUS CPUs, $MEM_MB MB), partition debug, state in $STATE"
