#!/usr/bin/env bash
# A real two-node Slurm cluster on this one machine, for the tests of the Slurm launcher:
#   bash tests/slurm/cluster.sh start|stop|status|env
#
# munged, one slurmctld and two slurmd ("slurmd -N n1", "-N n2": one NodeName each, the same host, their own
# port), each node with one GRES GPU backed by a plain device file (/dev/null, /dev/zero: Slurm only needs a
# file to hand out), so every job gets CUDA_VISIBLE_DEVICES as on a GPU node.  Needs Debian's slurm-wlm and
# munge (tests/run.sh installs them) and root: the daemons run as root (SlurmUser=root).
#
# Everything lives in one private directory, $DSTRAIN_SLURM_DIR (default /run/dstrain-slurm): slurm.conf,
# gres.conf, the munge key and socket, the daemons' state, logs and pid files.  Nothing goes to /etc, and
# no system service is touched.  Clients find the cluster with SLURM_CONF; `env` prints that export.
#
# start is idempotent: with the cluster up and answering it does nothing.  Daemons left by a killed run
# (found by their pid files, and only if they run this directory's config) are stopped, and their state
# removed, before a fresh start.  One cluster per machine: the ports are fixed (16817-16819).
set -euo pipefail

dir=${DSTRAIN_SLURM_DIR:-/run/dstrain-slurm}
conf=$dir/slurm.conf
export SLURM_CONF=$conf
CTLD_PORT=16817
NODES=(n1 n2)
NODE_PORTS=(16818 16819)
GPU_FILES=(/dev/null /dev/zero)

# A test job's whole life (seconds) after it ends, before slurmctld forgets it (no accounting here): short,
# so that the tests see a job forgotten.  Slurm's default is 300.  A job killed at its time limit gets its
# end time at the SIGTERM and its final state KillWait later: the gap between the two settings is how long
# that state can be seen.
MIN_JOB_AGE=${DSTRAIN_SLURM_MIN_JOB_AGE:-20}
# Seconds between SIGTERM and SIGKILL when a job is cancelled or passes its time limit (default 30).
KILL_WAIT=${DSTRAIN_SLURM_KILL_WAIT:-10}

say() { echo "slurm cluster: $*" >&2; }

write_config() {
    local host i
    host=$(hostname -s)
    mkdir -p "$dir"/{munge,ctld,log} "${NODES[@]/#/$dir/spool/}"
    # munged wants its socket reachable by every user (any user may submit), and its key private.
    chmod 0755 "$dir" "$dir/munge"
    chmod 0700 "$dir/ctld"
    # munged refuses a key anyone else can read; 1024 random bytes, as mungekey makes.
    [[ -s $dir/munge/munge.key ]] || (umask 077; head -c 1024 /dev/urandom >"$dir/munge/munge.key")
    : >"$dir/plugstack.conf"   # not Debian's /etc/slurm/plugstack.conf: this cluster loads no SPANK plugin
    cat >"$conf.tmp" <<EOF
# Written by tests/slurm/cluster.sh: a two-node test cluster on one machine.
ClusterName=dstrain-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$dir/ctld
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.%n.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.%n.log
PlugStackConfig=$dir/plugstack.conf
# No cgroups: processes are tracked by their parent, and tasks are not bound to CPUs.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=256
GresTypes=gpu
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
MinJobAge=$MIN_JOB_AGE
KillWait=$KILL_WAIT
SlurmdTimeout=60
EOF
    for i in "${!NODES[@]}"; do
        echo "NodeName=${NODES[i]} NodeHostname=$host NodeAddr=127.0.0.1 Port=${NODE_PORTS[i]} CPUs=2 RealMemory=2048 Gres=gpu:1 State=UNKNOWN"
    done >>"$conf.tmp"
    echo "PartitionName=test Nodes=$(IFS=,; echo "${NODES[*]}") Default=YES MaxTime=INFINITE State=UP" >>"$conf.tmp"
    for i in "${!NODES[@]}"; do
        echo "NodeName=${NODES[i]} Name=gpu File=${GPU_FILES[i]}"
    done >"$dir/gres.conf"
    mv "$conf.tmp" "$conf"
}

# pid_of NAME: the pid in $dir/NAME.pid when that process runs and is ours (its command line names this
# directory's config or munge key), else nothing.
pid_of() {
    local pidfile=$dir/$1.pid pid
    [[ -s $pidfile ]] || return 0
    pid=$(<"$pidfile")
    [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$dir/" && echo "$pid"
    return 0
}

daemons() { echo munged slurmctld "${NODES[@]/#/slurmd.}"; }

answering() {
    local state
    for name in $(daemons); do [[ -n $(pid_of "$name") ]] || return 1; done
    state=$(sinfo -h -N -o '%N %t' 2>/dev/null) || return 1
    # Both nodes up: idle, or busy with a job (mix, alloc), or ending one (comp).
    [[ $(grep -cE ' (idle|mix|alloc|comp)$' <<<"$state") -eq ${#NODES[@]} ]]
}

# Every process of this cluster's job steps: slurmstepd inherits slurmd's SLURM_CONF, which names this
# directory; the job's own processes are the step daemons' descendants.
step_processes() {
    local pid roots=()
    for pid in $(pgrep -x slurmstepd || true); do
        tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qxF "SLURM_CONF=$conf" && roots+=("$pid")
    done
    while ((${#roots[@]})); do
        echo "${roots[@]}"
        mapfile -t roots < <(for pid in "${roots[@]}"; do pgrep -P "$pid" || true; done)
    done
}

stop() {
    local name pid pids=()
    # The jobs first, while the cluster still answers: cancelled, with their processes (their own grace
    # is not waited for: this is the end of a test run).
    if [[ -n $(pid_of slurmctld) ]]; then
        mapfile -t pids < <(squeue -h -o %i 2>/dev/null || true)
        ((${#pids[@]} == 0)) || scancel --full --signal=KILL "${pids[@]}" 2>/dev/null || true
        pids=()
    fi
    # slurmd first: a node that loses its controller keeps waiting for it; munged last, the others need it.
    for name in "${NODES[@]/#/slurmd.}" slurmctld munged; do
        pid=$(pid_of "$name")
        [[ -z $pid ]] || { kill "$pid" 2>/dev/null || true; pids+=("$pid"); }
    done
    for _ in $(seq 50); do
        pid=""
        for p in "${pids[@]}"; do [[ -d /proc/$p ]] && pid=$p; done
        [[ -z $pid ]] && break
        sleep 0.2
    done
    for p in "${pids[@]}"; do [[ -d /proc/$p ]] && kill -9 "$p" 2>/dev/null; done
    # A job's processes outlive a killed slurmd (its slurmstepd runs on): what a killed run left of this
    # cluster's jobs is ended too, so that the next start begins with an empty machine.
    pids=($(step_processes))
    ((${#pids[@]} == 0)) || kill -9 "${pids[@]}" 2>/dev/null || true
    return 0
}

start() {
    local started=$SECONDS name i
    if answering; then say "already up ($dir)"; return 0; fi
    stop   # whatever a killed run left
    rm -rf "$dir/ctld" "$dir/spool" "$dir/log" "$dir"/*.pid "$dir"/*.conf "$dir/munge/munge.socket"*
    write_config
    munged --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
        --pid-file="$dir/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/munged.seed"
    # -i: no state to recover, this is a new cluster every time.
    slurmctld -f "$conf" -i
    for i in "${!NODES[@]}"; do
        slurmd -f "$conf" -N "${NODES[i]}"
    done
    for _ in $(seq 150); do
        answering && break
        sleep 0.2
    done
    if ! answering; then
        say "did not come up within 30 s; its logs:"
        tail -n 20 "$dir"/log/*.log >&2 || true
        sinfo -N >&2 || true
        return 1
    fi
    say "up in $((SECONDS - started)) s ($dir)"
}

case ${1:-} in
    start) start ;;
    stop) stop; say "stopped" ;;
    status) if answering; then sinfo -N; else say "not running"; exit 1; fi ;;
    env) echo "export SLURM_CONF=$conf" ;;
    *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
