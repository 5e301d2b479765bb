#!/usr/bin/env bash
# A single-node Slurm on this host (Debian's slurm-wlm): slurmctld + slurmd as root on loopback, munge auth.
# Idempotent: installs only what is missing, writes the config only when it is not ours, starts only what is down.
# Used by the AiiDA core.slurm test (tests/aiida/test_slurm.py) through AiiDA's core.local transport.
#   scripts/install-slurm.sh          install + start, wait until the node is idle
#   scripts/install-slurm.sh stop     stop slurmd, slurmctld (munged is left running)
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
conf=/etc/slurm/slurm.conf
marker="# written by mlkkr scripts/install-slurm.sh"
node=$(hostname -s)

if [ "${1:-start}" = stop ]; then
  scontrol shutdown >/dev/null 2>&1 || true
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-slurm: needs root (apt-get, daemons as root); run: sudo $0" >&2
  exit 1
fi

missing=()
for p in slurm-wlm munge; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-slurm: installing ${missing[*]}"
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# munge: a key and the daemon (slurm authenticates every RPC with it).
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
fi
mkdir -p /run/munge && chown munge:munge /run/munge
if ! munge -n >/dev/null 2>&1; then
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 20); do munge -n >/dev/null 2>&1 && break; sleep 0.5; done
fi

cpus=$(nproc)
if ! grep -qF "$marker" "$conf" 2>/dev/null || ! grep -q "^NodeName=$node " "$conf"; then
  [ -f "$conf" ] && cp "$conf" "$conf.bak.$(date +%s)"
  mkdir -p /etc/slurm
  cat > "$conf" <<EOF
$marker
ClusterName=mlkkr
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
ReturnToService=2
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=5
Waittime=0
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
fi
mkdir -p /var/spool/slurmctld /var/spool/slurmd /var/log/slurm

pgrep -x slurmctld >/dev/null || /usr/sbin/slurmctld
for _ in $(seq 30); do scontrol ping 2>/dev/null | grep -q UP && break; sleep 1; done
pgrep -x slurmd >/dev/null || /usr/sbin/slurmd
for _ in $(seq 60); do
  state=$(sinfo -h -n "$node" -o %t 2>/dev/null || true)
  case "$state" in idle*|mix*|alloc*) break ;; down*|drain*) scontrol update nodename="$node" state=resume >/dev/null 2>&1 || true ;; esac
  sleep 1
done
state=$(sinfo -h -n "$node" -o %t 2>/dev/null || true)
case "$state" in
  idle*|mix*|alloc*) echo "install-slurm: ready (node $node $state, partition debug, $cpus CPUs)" ;;
  *) echo "install-slurm: node $node is '$state'; see /var/log/slurm/slurmd.log and slurmctld.log" >&2; exit 1 ;;
esac
