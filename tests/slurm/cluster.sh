#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for the Slurm tests: munged, slurmctld and slurmd
# as plain background processes (no systemd), two fake GPUs. Debian 12's packages
# (slurmctld, slurmd, slurm-client, munge; .ci/run installs them).
#
#   tests/slurm/cluster.sh start   # idempotent: returns at once when the cluster answers
#   tests/slurm/cluster.sh stop
#
# Everything lives in $PIPE_SLURM_DIR (default /tmp/pipe-slurm); Slurm's commands find the
# config through SLURM_CONF, which the tests set to $PIPE_SLURM_DIR/slurm.conf.
set -euo pipefail
dir=${PIPE_SLURM_DIR:-/tmp/pipe-slurm}
conf=$dir/slurm.conf
export SLURM_CONF=$conf
host=$(hostname -s)

up() { sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; }

start() {
    if up; then return 0; fi
    for c in munged slurmctld slurmd sbatch; do
        command -v "$c" >/dev/null || PATH=$PATH:/usr/sbin command -v "$c" >/dev/null || {
            echo "cluster.sh: $c not found (apt-get install slurmctld slurmd slurm-client munge)" >&2
            exit 1
        }
    done
    export PATH=$PATH:/usr/sbin
    mkdir -p "$dir"/{state,spool,log,munge,dev}
    # munge: a key, and a socket directory munged owns.
    if [ ! -f "$dir/munge/munge.key" ]; then
        dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
    fi
    mkdir -p /etc/munge /run/munge /var/log/munge /var/lib/munge
    cp "$dir/munge/munge.key" /etc/munge/munge.key
    chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge
    chmod 700 /etc/munge
    chmod 400 /etc/munge/munge.key
    if ! pgrep -x munged >/dev/null; then
        runuser -u munge -- munged --force
        pgrep -nx munged >"$dir/munged.started"
    fi
    # Two fake GPUs: gres needs device files, any character device will do.
    for i in 0 1; do
        [ -e "$dir/dev/gpu$i" ] || mknod "$dir/dev/gpu$i" c 1 3
    done
    cat >"$dir/gres.conf" <<EOF
AutoDetect=off
NodeName=$host Name=gpu File=$dir/dev/gpu[0-1]
EOF
    cpus=$(nproc)
    mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
    cat >"$conf" <<EOF
ClusterName=pipe-test
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
EnforcePartLimits=ALL
ReturnToService=2
MinJobAge=600
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/log/jobcomp.txt
JobAcctGatherType=jobacct_gather/none
# Time limits are enforced within ~30 s of their end; keep the tests' waits short.
InactiveLimit=0
KillWait=5
OverTimeLimit=0
GresTypes=gpu
MpiDefault=none
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    cp "$dir/gres.conf" "$(dirname "$conf")/gres.conf" 2>/dev/null || true
    if ! pgrep -x slurmctld >/dev/null; then
        slurmctld -f "$conf" -i >>"$dir/log/slurmctld.out" 2>&1
    fi
    if ! pgrep -x slurmd >/dev/null; then
        slurmd -f "$conf" -N "$host" >>"$dir/log/slurmd.out" 2>&1
    fi
    for _ in $(seq 1 100); do
        if up; then return 0; fi
        scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true
        sleep 0.2
    done
    echo "cluster.sh: the node did not come up; see $dir/log" >&2
    sinfo -N -l >&2 || true
    tail -5 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
    exit 1
}

# Stops only what this script started, by the PIDs its config wrote (and munged's, when it
# started it): never another cluster on the same machine.
stop() {
    for f in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munged.started"; do
        [ -f "$f" ] || continue
        pid=$(cat "$f")
        name=$(basename "$f" | sed 's/\..*//')
        if [ -n "$pid" ] && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = "$name" ]; then
            kill "$pid" || true
        fi
        rm -f "$f"
    done
}

case "${1:-start}" in
start) start ;;
stop) stop ;;
*) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
