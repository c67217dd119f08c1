#!/usr/bin/env bash
# DeepSpeech 0.9.3's generate_scorer_package, compiled from the source tree's native_client/ (its decoder,
# the KenLM and OpenFST copies it ships) without Bazel or TensorFlow.  Linked statically, so one build runs
# on any x86-64 base image.
#
#   bash docker/build_scorer_tool.sh SOURCE_TREE PREFIX     installs PREFIX/bin/generate_scorer_package
#
# SOURCE_TREE is what docker/deepspeech_source.sh extracted.  Needs g++ (C++17) and the static library of
# boost program_options (Debian: build-essential libboost-program-options-dev).
set -euo pipefail

src=${1:?usage: build_scorer_tool.sh SOURCE_TREE PREFIX}/native_client
prefix=${2:?usage: build_scorer_tool.sh SOURCE_TREE PREFIX}
[[ -f $src/generate_scorer_package.cpp ]] || { echo "build_scorer_tool.sh: no $src/generate_scorer_package.cpp" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The tool uses absl::optional only; the C++17 standard one is the same type, so a two-line header stands in
# for Abseil (not in the source tree).
mkdir -p "$work/include/absl/types"
cat >"$work/include/absl/types/optional.h" <<'EOF'
#include <optional>
namespace absl { using std::optional; using std::nullopt; }
EOF

openfst=$src/ctcdecode/third_party/openfst-1.6.7
sources=("$src"/generate_scorer_package.cpp "$src"/deepspeech_errors.cc "$src"/alphabet.cc
         "$src"/ctcdecode/{ctc_beam_search_decoder,decoder_utils,scorer,path_trie}.cpp "$openfst"/src/lib/*.cc)
# KenLM's library, as native_client/BUILD globs it: no tests, no programs.
for file in "$src"/kenlm/lm/*.cc "$src"/kenlm/util/*.cc "$src"/kenlm/util/double-conversion/*.cc; do
    [[ $file == *test.cc || $file == *main.cc ]] || sources+=("$file")
done
flags=(-std=c++17 -O2 -w -DKENLM_MAX_ORDER=6 -I"$work/include" -I"$src" -I"$src/kenlm"
       -I"$src/ctcdecode/third_party/ThreadPool" -I"$src/ctcdecode/third_party/object_pool" -I"$openfst/src/include")

echo "compiling generate_scorer_package (${#sources[@]} files, $(nproc) at a time)" >&2
export work
printf '%s\0' "${sources[@]}" | xargs -0 -P "$(nproc)" -I{} sh -c \
    'g++ "$@" -c "{}" -o "$work/obj-$(echo "{}" | md5sum | cut -c1-12).o" || exit 255' _ "${flags[@]}"
# OpenFST can load extensions with dlopen, which the tool never does: the linker's warning about it is noise.
g++ -static -s -pthread -o "$work/generate_scorer_package" "$work"/obj-*.o -lboost_program_options -lm -ldl \
    2>"$work/link.log" || { cat "$work/link.log" >&2; exit 1; }

# Its exit status says nothing (0 on failures, 1 for --help), so prove it runs by its usage text.
usage=$("$work/generate_scorer_package" --help 2>&1 || true)
[[ $usage == *--package* ]] || { echo "build_scorer_tool.sh: the built generate_scorer_package does not run: \
$usage" >&2; exit 1; }
mkdir -p "$prefix/bin"
install -m 0755 "$work/generate_scorer_package" "$prefix/bin/generate_scorer_package.tmp"
mv "$prefix/bin/generate_scorer_package.tmp" "$prefix/bin/generate_scorer_package"
echo "generate_scorer_package in $prefix/bin" >&2
