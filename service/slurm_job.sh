#!/bin/bash
# One run of a dstrain job on a Slurm node, as service/slurm_launcher.py submits it (sbatch reads it from
# stdin).  It runs as the service's user (root: it must switch to the tenant's uid, or talk to dockerd), and
# does only this:
#   1. records that the run started: node, GPUs, time (<records>/<handle>.started);
#   2. runs the payload, in a session of its own, the tenant's part as the tenant's uid:
#        native: setpriv to the uid, a clean environment, the node's own dstrain;
#        docker: docker run of the training image (the uid, mounts and limits are in its arguments), with
#                the GPUs Slurm gave the job;
#   3. passes signals on (below), waits for the payload;
#   4. records its exit status and end time (<records>/<handle>.exit), so the service knows the outcome
#      after Slurm has forgotten the job (without accounting it does, MinJobAge after the end);
#   5. exits with the payload's status.
# Records are written to a temporary name, synced, then renamed: a reader sees a whole record or none.  They
# go to the service's own records directory, never the tenant's: anything the tenant's uid can write is the
# tenant's to forge.
#
# Signals.  USR1 (the service's stop: `scancel --batch --signal=USR1`, to this script only) asks the payload
# to stop cleanly: SIGTERM to dstrain, which stops DeepSpeech and records the stage as interrupted.  TERM comes
# from Slurm itself (scancel, the time limit) to every process of the job, followed by SIGKILL KillWait seconds
# later; a docker client killed that way leaves its container running, so with docker the container is
# killed DSJOB_KILL_AFTER seconds after the TERM (the admin keeps that below KillWait).
#
# Set by the launcher, in the environment sbatch passes on:
#   DSJOB_RECORDS DSJOB_HANDLE  where the records go, and their name
#   DSJOB_JOB DSJOB_ATTEMPT     the dstrain job and attempt, in every record
#   DSJOB_RUNTIME               native | docker
#   DSJOB_COMMAND               the payload's argv, one per line
#   DSJOB_PASS                  names of variables for the payload (its secrets, the node's tool settings)
#   DSJOB_DATA                  native: the tenant's directory, its DSTRAIN_DATA_ROOT
#   DSJOB_USER                  native: UID:GID
#   DSJOB_CONTAINER             docker: the container's name
#   DSJOB_GPUS                  GPUs asked of Slurm (docker: given to the container)
#   DSJOB_KILL_AFTER            docker: seconds from Slurm's TERM to killing the container
set -u
umask 077
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

records=$DSJOB_RECORDS/$DSJOB_HANDLE
# What the payload sees, and the node's own ids of the job's GPUs.  dockerd runs outside the job (and outside
# its cgroup, where Slurm may renumber what CUDA_VISIBLE_DEVICES counts): a container is given the node's ids.
gpus=${CUDA_VISIBLE_DEVICES:-}
job_gpus=${SLURM_JOB_GPUS:-$gpus}
started=$(date +%s.%N)
stop_signal=""
payload=""

record() {  # record SUFFIX JSON
    local tmp=$DSJOB_RECORDS/.$DSJOB_HANDLE.$1.$$
    printf '%s\n' "$2" >"$tmp" && sync "$tmp" && mv -f "$tmp" "$records.$1"
}
fields() {
    printf '"job": "%s", "attempt": %d, "slurm_job": "%s", ' "$DSJOB_JOB" "$DSJOB_ATTEMPT" "${SLURM_JOB_ID:-}"
    printf '"node": "%s", "gpus": "%s", "job_gpus": "%s", "started": %s' \
        "${SLURMD_NODENAME:-}" "$gpus" "$job_gpus" "$started"
}

# How a stop reaches the payload: softly (SIGTERM to dstrain), or at once (a docker client killed by Slurm
# leaves its container running).
if [[ $DSJOB_RUNTIME == docker ]]; then
    soft() { docker kill --signal TERM "$DSJOB_CONTAINER" >/dev/null 2>&1; }
    hard() { docker kill "$DSJOB_CONTAINER" >/dev/null 2>&1; }
else
    soft() { kill -TERM "$payload" 2>/dev/null; }
fi
on_signal() {  # on_signal NAME
    [[ -n $stop_signal ]] || stop_signal=$1
    [[ -n $payload ]] || return 0   # before the payload started: it never will
    soft
    if [[ $1 == TERM && $DSJOB_RUNTIME == docker ]]; then
        (sleep "$DSJOB_KILL_AFTER"; hard) &
    fi
}
# Set first: bash's default for USR1 is to exit, without a record.
trap 'on_signal USR1' USR1
trap 'on_signal TERM' TERM

record started "{$(fields)}" || { echo "error: cannot write the run's records in $DSJOB_RECORDS" >&2; exit 1; }

mapfile -t command <<<"$DSJOB_COMMAND"
passed=()
for name in $DSJOB_PASS; do passed+=("$name=${!name-}"); done   # native: through env -i

if [[ -n $stop_signal ]]; then
    status=143
elif [[ $DSJOB_RUNTIME == docker ]]; then
    # The variables reach the container by name (-e NAME): their values stay out of every command line.  The
    # label lets a node's Epilog remove a container whose job script was killed before it could.
    extra=(--label "dstrain.slurm_job=${SLURM_JOB_ID:-}")
    for name in $DSJOB_PASS; do extra+=(-e "$name"); done
    # Quoted: docker's --gpus splits its value at commas, and CUDA_VISIBLE_DEVICES may hold several ids.
    ((DSJOB_GPUS > 0)) && extra+=(--gpus "\"device=$job_gpus\"")
    setsid "${command[0]}" "${command[1]}" "${extra[@]}" "${command[@]:2}" &
    payload=$!
else
    uid=${DSJOB_USER%%:*} gid=${DSJOB_USER#*:}
    cd "$DSJOB_DATA" || exit 1
    setsid setpriv --reuid="$uid" --regid="$gid" --clear-groups --no-new-privs --inh-caps=-all \
        env -i PATH="$PATH" HOME="$DSJOB_DATA" LANG=C.UTF-8 DSTRAIN_DATA_ROOT="$DSJOB_DATA" \
        ${gpus:+CUDA_VISIBLE_DEVICES="$gpus"} "${passed[@]}" "${command[@]}" &
    payload=$!
fi

if [[ -n $payload ]]; then
    # wait returns early when a trapped signal arrives: wait again until the payload has really ended.  Bash
    # keeps the status of a reaped child, so the last wait gives it whichever wait reaped it.
    while kill -0 "$payload" 2>/dev/null; do wait "$payload"; done
    wait "$payload"
    status=$?
fi

record exit "{$(fields), \"ended\": $(date +%s.%N), \"exit_code\": $status, \"stop_signal\": \"$stop_signal\"}"
exit "$status"
