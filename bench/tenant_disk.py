"""How long measuring a tenant's disk in use takes: the quota's walk over a tree of many files.

    .venv/bin/python bench/tenant_disk.py [--files 100000] [--per-dir 1000] [--size 4096]

Makes a tree like a tenant's after an import (many clips in a few directories) in a temporary directory,
then times tenantfs's walk (``Tree.usage``: every entry's own status, each directory opened beneath its
parent's descriptor) against `du -s -B1`, which counts the same way.  The page cache is warm (the tree was
just written): a cold walk on a spinning disk is slower.  Not part of CI.
"""
import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dstrain.service import tenantfs  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--per-dir", type=int, default=1000)
    parser.add_argument("--size", type=int, default=4096, help="bytes per file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tenant-disk-") as place:
        tenant = Path(place) / "tenant"
        started = time.monotonic()
        data = b"x" * args.size
        for i in range(args.files):
            directory = tenant / "imported" / "fr" / "common_voice" / f"clips-{i // args.per_dir:04d}"
            if i % args.per_dir == 0:
                directory.mkdir(parents=True)
            (directory / f"clip-{i:07d}.wav").write_bytes(data)
        print(f"made {args.files} files of {args.size} bytes in {time.monotonic() - started:.1f} s")
        timings = []
        for _ in range(3):
            started = time.monotonic()
            with tenantfs.Tree(tenant) as tree:
                used = tree.usage()
            timings.append(time.monotonic() - started)
        started = time.monotonic()
        du = int(subprocess.run(["du", "-s", "-B1", str(tenant)], capture_output=True, text=True, check=True)
                 .stdout.split()[0])
        du_seconds = time.monotonic() - started
        print(f"tenantfs walk: {used} bytes in use; {min(timings):.2f} s best of 3 "
              f"({args.files / min(timings):,.0f} files/s); du -s: {du} bytes in {du_seconds:.2f} s")


if __name__ == "__main__":
    main()
