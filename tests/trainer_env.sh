#!/usr/bin/env bash
# The real DeepSpeech 0.9.3 trainer for the tests, built once and cached, like KenLM:
#   - a Python 3.7 virtualenv with TensorFlow 1.15.5 (CPU), DeepSpeech's training package, ds_ctcdecoder
#     and optuna (installed by docker/install_trainer.sh, as in the image);
#   - generate_scorer_package, compiled from the same source (docker/build_scorer_tool.sh, as in the image);
#   - the source tree itself, for lm_optimizer.py;
#   - the official runtimes deepspeech==0.9.3 and deepspeech-tflite==0.9.3, each in its own virtualenv (both
#     install a module named deepspeech), to transcribe with what the tests export.
#
#   eval "$(bash tests/trainer_env.sh)"      prints the exports the deepspeech tests read
#
# DEEPSPEECH_SOURCE: the source tarball, a path or URL (default: the pinned GitHub tree, checked by its files);
# DEEPSPEECH_SHA256: its sha256 (default for a given source: that of ../shared/vendor/'s v0.9.3 tarball).
# PYTHON37: the Python 3.7 to use (default: pyenv's, then python3.7 on PATH).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)

VENDORED_SHA256=d1981e510f2803f2021985d82209963751d671247a8f10614f0af152c9276f4e
if [[ -n ${DEEPSPEECH_SOURCE:-} ]]; then
    source=$DEEPSPEECH_SOURCE sha256=${DEEPSPEECH_SHA256:-$VENDORED_SHA256}
else
    source=github sha256=""
fi

python37=${PYTHON37:-$(ls -d "$HOME"/.pyenv/versions/3.7.*/bin/python 2>/dev/null | tail -n1)}
python37=${python37:-$(command -v python3.7 || true)}
[[ -x $python37 ]] || { echo "trainer_env.sh: no Python 3.7 (TensorFlow 1.15 needs <= 3.7); set PYTHON37" >&2; exit 1; }

# Anything that changes what is built changes the cache entry.
key=$( { echo "$source $sha256 $("$python37" --version 2>&1)"
         cat "$repo"/docker/{deepspeech_source.sh,install_trainer.sh,trainer-constraints.txt,build_scorer_tool.sh} "$0"
       } | sha256sum | cut -c1-16)
cache_root=${XDG_CACHE_HOME:-$HOME/.cache}/dstrain
env_dir="$cache_root/trainer-0.9.3-$key"
mkdir -p "$cache_root"

build() {
    # Virtualenvs are not relocatable (TensorFlow's tflite export runs a console script by its shebang), so
    # the entry is built in place and marked complete last; a half-built one is removed and built again.
    rm -rf "$env_dir"
    mkdir -p "$env_dir"
    local started=$SECONDS
    bash "$repo/docker/deepspeech_source.sh" "$source" "$sha256" "$env_dir/src"
    "$python37" -m venv "$env_dir/venv"
    "$env_dir/venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade "pip<24.1"
    # Stands in for the TF1 base image's Python: TensorFlow 1.15.5 with the numpy and protobuf it works with.
    "$env_dir/venv/bin/python" -m pip install -q --disable-pip-version-check \
        tensorflow==1.15.5 numpy==1.18.5 protobuf==3.20.3
    bash "$repo/docker/install_trainer.sh" "$env_dir/venv/bin/python" "$env_dir/src"
    bash "$repo/docker/build_scorer_tool.sh" "$env_dir/src" "$env_dir"
    for runtime in deepspeech deepspeech-tflite; do
        "$python37" -m venv "$env_dir/runtime-$runtime"
        "$env_dir/runtime-$runtime/bin/python" -m pip install -q --disable-pip-version-check "$runtime==0.9.3"
    done
    touch "$env_dir/.complete"
    echo "trainer environment built in $((SECONDS - started)) s: $env_dir" >&2
}

(
    flock 9  # one build at a time; a second caller waits, then finds it complete
    [[ -f $env_dir/.complete ]] || build
) 9>"$env_dir.lock"

cat <<EOF
export TRAINER_PYTHON=$env_dir/venv/bin/python
export LM_OPTIMIZER=$env_dir/src/lm_optimizer.py
export GENERATE_SCORER_PACKAGE=$env_dir/bin/generate_scorer_package
export DEEPSPEECH_RUNTIME=$env_dir/runtime-deepspeech/bin/python
export DEEPSPEECH_TFLITE_RUNTIME=$env_dir/runtime-deepspeech-tflite/bin/python
EOF
