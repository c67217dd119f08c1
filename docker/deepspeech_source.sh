#!/usr/bin/env bash
# DeepSpeech v0.9.3's source tree, fetched and verified: the training package, lm_optimizer.py, and the
# native_client/ sources that generate_scorer_package is compiled from.  Used by the test command and by
# Dockerfile.train, so both get the same tree the same way.
#
#   bash docker/deepspeech_source.sh SOURCE SHA256 DEST
#
# SOURCE  a tarball: a local path, or an http(s) URL (a mirror, the test server, GitHub)
# SHA256  the tarball's sha256; empty to check the extracted tree instead.  GitHub regenerates its archives,
#         so their bytes (and sha256) change while the files in them do not: the pinned GitHub tree is
#         checked by TREE_SHA256, the digest of the files that are built and installed.
# DEST    a directory; the tree is extracted into it (its top-level directory stripped).
set -euo pipefail

#: mozilla/DeepSpeech tag v0.9.3.
COMMIT=f2e9c85880dff94115ab510cde9ca4af7ee51c19
GITHUB_URL="https://github.com/mozilla/DeepSpeech/archive/$COMMIT.tar.gz"
#: sha256 of the sorted `sha256sum` lines of these files at that commit (see tree_digest).
TREE_SHA256=b90b8eafdb5978ac4ce6dc20fe1c4811612e235b62d282c21f3968443324e674
VERIFIED=(training native_client setup.py VERSION lm_optimizer.py)

fail() { echo "deepspeech_source.sh: $*" >&2; exit 1; }

tree_digest() {  # $1: an extracted tree
    (cd "$1" && find "${VERIFIED[@]}" \( -type f -o -type l \) -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) \
        | sha256sum | cut -d' ' -f1
}

source=${1:?usage: deepspeech_source.sh SOURCE SHA256 DEST (SOURCE: path or URL; SHA256 may be empty)}
expected=${2-}
dest=${3:?usage: deepspeech_source.sh SOURCE SHA256 DEST}
[[ $source == github ]] && source=$GITHUB_URL

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
archive="$work/deepspeech.tar.gz"
case $source in
    http://* | https://*)
        echo "DeepSpeech source: downloading $source" >&2
        curl -fsSL --retry 5 -o "$archive" "$source" || fail "could not download the DeepSpeech source $source" ;;
    *)
        [[ -f $source ]] || fail "the DeepSpeech source $source is not a file (DEEPSPEECH_SOURCE: a path or a URL)"
        archive=$source ;;
esac

if [[ -n $expected ]]; then
    actual=$(sha256sum "$archive" | cut -d' ' -f1)
    [[ $actual == "${expected,,}" ]] \
        || fail "the DeepSpeech source $source has sha256 $actual, expected DEEPSPEECH_SHA256=$expected"
fi

mkdir -p "$work/tree"
tar -xzf "$archive" -C "$work/tree" --strip-components=1 --no-same-owner \
    || fail "the DeepSpeech source $source is not a readable .tar.gz"
if [[ -z $expected ]]; then
    actual=$(tree_digest "$work/tree")
    [[ $actual == "$TREE_SHA256" ]] || fail "the files of the DeepSpeech source $source are not those of v0.9.3 \
(commit $COMMIT): their digest is $actual, expected $TREE_SHA256"
fi
mkdir -p "$dest"
cp -a "$work/tree/." "$dest/"
echo "DeepSpeech source: $source verified, in $dest" >&2
