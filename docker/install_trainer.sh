#!/usr/bin/env bash
# Installs DeepSpeech 0.9.3's training package, its CTC decoder and optuna into a Python that already has
# TensorFlow 1.15: the TF1 base image's Python (Dockerfile.train) or the test environment's.
#
#   bash docker/install_trainer.sh PYTHON SOURCE_TREE
#
# DS_NOTENSORFLOW=y keeps DeepSpeech's setup.py from asking for its own TensorFlow, and every package the
# Python already has is pinned, so the base's TensorFlow, CUDA bindings and numpy are never replaced.
set -euo pipefail

python=${1:?usage: install_trainer.sh PYTHON SOURCE_TREE}
tree=${2:?usage: install_trainer.sh PYTHON SOURCE_TREE}
here=$(cd "$(dirname "$0")" && pwd)

"$python" -c "import tensorflow" 2>/dev/null || {
    echo "install_trainer.sh: $python cannot import tensorflow; DeepSpeech 0.9.3 trains with TensorFlow 1.15" >&2
    exit 1
}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
{ cat "$here/trainer-constraints.txt"; "$python" -m pip list --format=freeze --disable-pip-version-check; } \
    | grep -v -E '^(pip|setuptools|wheel)==' >"$work/constraints.txt"
DS_NOTENSORFLOW=y "$python" -m pip install --no-cache-dir --disable-pip-version-check -q \
    -c "$work/constraints.txt" "$tree" "ds_ctcdecoder==0.9.3" optuna
"$python" -c "import deepspeech_training.train, ds_ctcdecoder, optuna" \
    || { echo "install_trainer.sh: the trainer does not import after installation" >&2; exit 1; }
echo "DeepSpeech 0.9.3 training installed for $python" >&2
