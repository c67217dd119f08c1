#!/bin/bash
# The image's entrypoint: runs its arguments (dstrain, or tensorboard) as the owner of the data directory.
#
#   as-data-owner COMMAND [ARGUMENTS...]
#
# Docker starts it as root only so that it can become that owner, the way PostgreSQL's and Redis's images do:
# it reads who owns the data root (/data, where docker-compose.yml mounts ./data), and replaces itself with
# COMMAND under that uid and gid, with no supplementary groups, no capabilities (none left, none to inherit,
# none in the bounding set) and no_new_privs, so that no set-uid file can make it root again.  Nothing runs
# as root before that, and COMMAND is exec'd, not forked: the init stays PID 1 and its signals reach it.
#   - Started as another user (UID/GID in .env, `user:`, the service's jobs): COMMAND runs as that user.
#   - The data root belongs to root: refuses, with the command that hands it to the user; nothing is written.
#   - Rootless Docker or Podman: root here is the host user who owns the data (a user namespace maps it), so
#     COMMAND stays root, with no capabilities.
set -euo pipefail

# Whether this process is in a user namespace of its own (rootless Docker, Podman, userns-remap): the host's
# own namespace maps every uid to itself, in one line "0 0 4294967295".  uid_map: /proc/self/uid_map.
in_user_namespace() {
    local map
    map=$(cat -- "${1:-/proc/self/uid_map}" 2>/dev/null) || return 1
    # Unquoted, so that the columns' padding and the newline collapse to single spaces.
    # shellcheck disable=SC2086
    [[ "$(echo $map)" != "0 0 4294967295" ]]
}

refuse_root_owned() {
    local data=$1 on_host=${DSTRAIN_DATA_ON_HOST:-}
    if [[ $data == /data && -n $on_host ]]; then
        cat >&2 <<EOF
dstrain: the data directory $on_host belongs to root. dstrain runs as the owner of its data, never as root,
so that every file it writes is yours. Give it to yourself, on the host:

    sudo chown -R "\$(id -u):\$(id -g)" $(printf '%q' "$on_host")

then run the same command again. Nothing was written.
EOF
    else
        cat >&2 <<EOF
dstrain: the data directory $data belongs to root. dstrain runs as the owner of its data, never as root.
Mount a directory of yours there (docker run -v "\$PWD/data:$data" ...), or give this one to its user:
chown -R UID:GID on the host. Nothing was written.
EOF
    fi
    exit 2
}

main() {
    if [[ $(id -u) != 0 ]]; then
        exec "$@"
    fi
    local data=${DSTRAIN_DATA_ROOT:-/data} owner
    if ! owner=$(stat -c %u:%g -- "$data"); then
        echo "dstrain: cannot tell who owns the data directory $data: mount one there" \
             "(docker-compose.yml mounts ./data)." >&2
        exit 2
    fi
    local drop=(setpriv --inh-caps=-all --bounding-set=-all --no-new-privs)
    if [[ $owner != 0:* ]]; then
        exec "${drop[@]}" --reuid="${owner%%:*}" --regid="${owner##*:}" --clear-groups -- "$@"
    fi
    if in_user_namespace; then
        exec "${drop[@]}" -- "$@"
    fi
    refuse_root_owned "$data"
}

# Sourced, it only defines its functions.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    main "$@"
fi
