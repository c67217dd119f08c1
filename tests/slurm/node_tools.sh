#!/usr/bin/env bash
# The real trainer and KenLM where a tenant's uid on a test node can run them, for the Slurm tests' native
# runtime (the README's second path, "on storage every node sees"):
#   eval "$(bash tests/trainer_env.sh)"; bash tests/slurm/node_tools.sh DEST
# prints the nodes' tool settings, one KEY=VALUE a line (give each to `dstrain serve --node-env`).
#
# tests/trainer_env.sh builds the trainer under ~/.cache (in /root, 0700 here), on pyenv's Python 3.7: no
# tenant's uid can reach either.  This copies both to DEST, readable by everyone, once per trainer build:
#   DEST/python   pyenv's Python 3.7 (its prefix, copied), its RUNPATH pointed at its own lib/ (pyenv links it
#                 against its own libpython by an absolute path under /root)
#   DEST/venv     the trainer's virtualenv, hard-linked (same file system) or copied, its links, pyvenv.cfg and
#                 scripts' #! lines pointed at DEST (TensorFlow's tflite export runs a console script by its #!)
#   DEST/src DEST/bin  DeepSpeech's source (lm_optimizer.py) and generate_scorer_package
#   DEST/kenlm/bin     lmplz, build_binary, filter (docker/build_kenlm.sh, from its cache)
# Needs patchelf (tests/run.sh installs it).  Marked complete last; a half-made DEST is made again.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
dest=${1:?usage: node_tools.sh DEST}
: "${TRAINER_PYTHON:?run eval \"\$(bash tests/trainer_env.sh)\" first}"
env_dir=$(cd "$(dirname "$TRAINER_PYTHON")/../.." && pwd)   # .../trainer-0.9.3-<key>
base=$(sed -n 's/^home = //p' "$env_dir/venv/pyvenv.cfg")   # pyenv's .../3.7.x/bin
base_prefix=$(cd "$base/.." && pwd)
python_name=$(basename "$(readlink -f "$env_dir/venv/bin/python")")

make() {
    rm -rf "$dest"
    mkdir -p "$dest"
    cp -a "$base_prefix" "$dest/python"
    patchelf --set-rpath '$ORIGIN/../lib' "$dest/python/bin/$python_name"
    cp -al "$env_dir/venv" "$dest/venv" 2>/dev/null || cp -a "$env_dir/venv" "$dest/venv"
    cp -a "$env_dir/src" "$env_dir/bin" "$dest/"
    for link in "$dest"/venv/bin/python*; do
        [[ -L $link ]] && ln -sfn "$dest/python/bin/$python_name" "$link"
    done
    sed "s|^home = .*|home = $dest/python/bin|" "$env_dir/venv/pyvenv.cfg" >"$dest/venv/pyvenv.cfg.new"
    mv -f "$dest/venv/pyvenv.cfg.new" "$dest/venv/pyvenv.cfg"
    # Scripts naming the old virtualenv on their #! line: written anew (sed -i replaces a hard link).
    grep -lIs "^#!$env_dir/venv/bin/" "$dest"/venv/bin/* | while read -r script; do
        sed -i "1s|^#!$env_dir/venv/bin/|#!$dest/venv/bin/|" "$script"
    done
    bash "$repo/docker/build_kenlm.sh" "$dest/kenlm" >&2
    chmod -R a+rX "$dest"
    touch "$dest/.complete"
}

mkdir -p "$(dirname "$dest")"
(
    flock 9  # one at a time: a second caller waits, then finds it complete
    [[ -f $dest/.complete ]] || make
) 9>"$dest.lock"

cat <<EOF
TRAINER_PYTHON=$dest/venv/bin/python
DSTRAIN_LM__KENLM_BIN=$dest/kenlm/bin
DSTRAIN_LM__SCORER_TOOL=$dest/bin/generate_scorer_package
DSTRAIN_OPTIMIZE__SCRIPT=$dest/src/lm_optimizer.py
EOF
