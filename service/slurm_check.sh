#!/bin/bash
# The test job `dstrain serve --launcher slurm` runs on the cluster before it serves (service/slurm_check.py):
# does a node see the service's root, can a tenant's uid reach it, can the job script write its records, and
# does the runtime answer there?  It writes one line per problem to $DSCHECK_RESULT (empty: none).
set -u
umask 077
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
problems=()
seen=$(cat "$DSCHECK_PROBE" 2>&1)
[[ $seen == "$DSCHECK_NONCE" ]] || problems+=("node ${SLURMD_NODENAME:-?} does not see the service's root as the \
service does: $DSCHECK_PROBE ${seen:+($seen)}; it must be on storage the service and every node share")
if [[ -n $DSCHECK_USER ]]; then
    uid=${DSCHECK_USER%%:*} gid=${DSCHECK_USER#*:}
    as_tenant=(setpriv --reuid="$uid" --regid="$gid" --clear-groups --no-new-privs --inh-caps=-all)
    seen=$("${as_tenant[@]}" cat "$DSCHECK_PROBE" 2>&1)
    [[ $seen == "$DSCHECK_NONCE" ]] || problems+=("a tenant's uid ($uid) cannot read $DSCHECK_PROBE on node \
${SLURMD_NODENAME:-?} ($seen): every directory above the tenants' must let others pass (mode o+x)")
    if [[ $DSCHECK_RUNTIME == native ]]; then
        passed=()
        for name in $DSCHECK_PASS; do passed+=("$name=${!name-}"); done
        cd /
        out=$("${as_tenant[@]}" env -i PATH="$PATH" LANG=C.UTF-8 "${passed[@]}" "$DSCHECK_DSTRAIN" --version 2>&1) \
            || problems+=("the nodes' dstrain ($DSCHECK_DSTRAIN) does not run as a tenant's uid on node \
${SLURMD_NODENAME:-?}: ${out:0:300}")
    fi
fi
if [[ $DSCHECK_RUNTIME == docker ]]; then
    out=$(docker version --format '{{.Server.Version}}' 2>&1) \
        || problems+=("docker does not answer on node ${SLURMD_NODENAME:-?}: ${out:0:300}")
fi
printf '%s\n' "${problems[@]}" >"$DSCHECK_RESULT.tmp" && mv -f "$DSCHECK_RESULT.tmp" "$DSCHECK_RESULT"
