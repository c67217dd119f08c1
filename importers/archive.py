"""Safe, streaming extraction of source archives (tar, tar.gz, tar.bz2, tar.xz)."""
import logging
import shutil
import tarfile
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from pipeline.atomic import read_json, write_json
from pipeline.errors import DstrainError

log = logging.getLogger("dstrain")
DONE = ".extracted.json"


def extract(archive: Path, target: Path, identity: str, keep=lambda name: True) -> Path:
    """Extract the members ``keep`` accepts into ``target``; redo it unless it finished for this archive.

    ``identity`` (the archive's sha256) is written into the marker last, so a
    killed extraction or a different archive starts again from scratch.
    """
    marker = target / DONE
    if (read_json(marker) or {}).get("identity") == identity:
        return target
    if target.exists():
        shutil.rmtree(str(target))
    target.mkdir(parents=True)
    root = target.resolve()
    skipped = 0
    reader = tqdm.wrapattr(archive.open("rb"), "read", total=archive.stat().st_size,
                           desc="extract " + archive.name, leave=False)
    with reader as raw, tarfile.open(fileobj=raw, mode="r|*") as tar:
        for member in tar:
            parts = PurePosixPath(member.name).parts
            dest = root.joinpath(*parts) if parts else root
            if member.name.startswith("/") or ".." in parts or root not in (dest, *dest.parents):
                raise DstrainError(
                    f"{archive}: refusing member {member.name!r}, its path leaves the extraction directory; "
                    "the archive is corrupt or malicious"
                )
            if not keep(member.name):
                continue
            if member.isdir():
                dest.mkdir(parents=True, exist_ok=True)
            elif member.isfile():
                dest.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as src, dest.open("wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
            else:  # links and devices could point anywhere; sources never need them
                skipped += 1
    if skipped:
        log.warning("%s: skipped %d links or special files", archive.name, skipped)
    write_json(marker, {"identity": identity, "archive": archive.name})
    return target
