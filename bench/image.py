"""The training image: its size, and how long it takes to build cold, warm, and after a change to dstrain's code.

    .venv/bin/python bench/image.py            # on the stand-in bases of tests/docker_images.py
    .venv/bin/python bench/image.py --keep     # keep the image it built (dstrain-bench/train:cold)

Cold is `--no-cache`: every stage runs, its downloads included (the DeepSpeech source comes from a local
server, as in the tests; KenLM's source and the Python packages from PyPI).  The base images are already
there, as they are for a user who pulled them once.  Warm is the same build again.  "Code change" edits
one line of dstrain (a copy of the checkout), which rebuilds only the pipeline's own layer and what follows.
It needs a Docker engine (DEVELOPERS.md) and takes about as long as a cold build and a half.
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.docker_images import (  # noqa: E402
    build_train_image,
    copy_checkout,
    deepspeech_source,
    docker,
    ensure_tf1_standin,
    own,
)
from tests.http_server import FileServer  # noqa: E402

#: Under DSTRAIN_TEST_NAMESPACE's suffix, as the tests' own images, so two checkouts on one engine keep theirs apart.
TAG = own("dstrain-bench/train:cold")


def timed(context: Path, url: str, *extra: str) -> float:
    started = time.time()
    build_train_image(url, tag=TAG, context=context, extra=extra)
    return time.time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help=f"keep the image {TAG}")
    args = parser.parse_args()
    ensure_tf1_standin()
    source = deepspeech_source()
    with FileServer(source.parent) as server, tempfile.TemporaryDirectory() as tmp:
        url = f"{server.url}/{source.name}"
        context = copy_checkout(Path(tmp))
        cold = timed(context, url, "--no-cache")
        warm = timed(context, url)
        init = context / "pipeline" / "__init__.py"
        init.write_text(init.read_text() + "# bench/image.py: a change to dstrain's code\n")
        changed = timed(context, url)
    info = json.loads(docker("image", "inspect", TAG).stdout)[0]
    layers = docker("history", "--format", "{{.Size}}\t{{.CreatedBy}}", TAG).stdout.splitlines()
    print(f"image size:            {info['Size'] / 1e9:.2f} GB ({len(info['RootFS']['Layers'])} layers)")
    print(f"cold build:            {cold:.0f} s")
    print(f"warm build:            {warm:.1f} s")
    print(f"after a code change:   {changed:.1f} s")
    print("largest layers:")
    for line in sorted(layers, key=lambda row: _bytes(row.split("\t")[0]), reverse=True)[:6]:
        size, created = line.split("\t", 1)
        print(f"  {size:>8}  {created[:100]}")
    if not args.keep:
        docker("image", "rm", TAG, check=False)


def _bytes(size: str) -> float:
    units = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}
    for unit in ("kB", "MB", "GB", "B"):
        if size.endswith(unit):
            return float(size[: -len(unit)]) * units[unit]
    return 0.0


if __name__ == "__main__":
    main()
