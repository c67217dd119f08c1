#!/usr/bin/env bash
# The one test command: installs what the tests need on a fresh Debian 12 machine, then runs them.
#   bash tests/run.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

# Speech for test corpora; KenLM's build (tests build it once, cached, with docker/build_kenlm.sh) and the
# kenlm Python module's; setpriv for running as an ordinary user.
APT_PACKAGES=(python3-venv python3-dev espeak-ng lame sox libsox-fmt-mp3 util-linux
              build-essential cmake libboost-program-options-dev libboost-system-dev libboost-thread-dev
              libboost-test-dev zlib1g-dev libbz2-dev liblzma-dev)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "missing Debian packages: ${missing[*]}; install them with: apt-get install ${missing[*]}" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
[[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test,mdc,service]'
.venv/bin/python -m pip install -q ./tests/plugin_language   # a language shipped as its own pip package

echo "== lint (ruff, Python 3.8 target) and Python 3.8 compatibility (vermin)"
.venv/bin/ruff check pipeline importers languages service tests bench
.venv/bin/lint-imports   # the layering: contracts in pyproject.toml, docs/architecture.md
.venv/bin/vermin -q -t=3.8- --no-tips --violations --exclude-regex '^(tests|bench)/' pipeline importers languages service

# The training image runs the pipeline on Python 3.8: run the suite there too when one is installed.
find_python38() {
    local candidate
    for candidate in "$HOME"/.pyenv/versions/3.8.*/bin/python /usr/bin/python3.8 /usr/local/bin/python3.8; do
        [[ -x "$candidate" ]] && "$candidate" -c "pass" 2>/dev/null && { echo "$candidate"; return; }
    done
}
PY38=${PY38:-$(find_python38)}
if [[ -n "$PY38" ]]; then
    echo "== tests on Python 3.8 ($PY38)"
    [[ -x .venv38/bin/python ]] || "$PY38" -m venv .venv38
    .venv38/bin/python -m pip install -q --upgrade pip
    .venv38/bin/python -m pip install -q -e '.[test,service]' ./tests/plugin_language
    .venv38/bin/python -m pytest -q -p no:cacheprovider "$@"
else
    echo "== no Python 3.8 interpreter found: relying on vermin for 3.8 compatibility"
fi

echo "== tests on $(.venv/bin/python --version)"
exec .venv/bin/python -m pytest -q "$@"
