"""The language model's text sources in ``sources/``: got (downloaded, or placed by hand) and verified.

The download stage gets them with the datasets, when the run goes as far as the lm stage, so that a text
that cannot be had (offline, a moved file) stops the run before hours of import; the lm stage gets them
again, which costs nothing once they are verified.
"""
import json
import logging
from functools import partial
from pathlib import Path
from typing import Dict, Sequence, Tuple

from dstrain.pipeline.atomic import read_json
from dstrain.pipeline.language import TextSource
from dstrain.pipeline.paths import verified_record
from dstrain.pipeline.redaction import redact
from dstrain.pipeline.sources.fetch import obtain, obtain_each, verified_sha256

log = logging.getLogger("dstrain")


def all_verified(sources_dir: Path, sources: Sequence[TextSource]) -> bool:
    """Whether every text is in ``sources_dir``, verified."""
    return all(verified_sha256(sources_dir / s.filename) for s in sources)


def obtain_all(sources_dir: Path, sources: Sequence[TextSource]) -> Tuple[Dict[str, str], Dict[str, str]]:
    """Every text's verified sha256, and why each one that could not be had failed; all are tried, so one
    unreachable text does not hide another."""
    return obtain_each({s.name: partial(_obtain, sources_dir / s.filename, s) for s in sources})


def failure(failures: Dict[str, str], sources: Sequence[TextSource]) -> str:
    """What to tell the user of the texts that could not be had, with how to go on without them."""
    others = [s.name for s in sources if s.name not in failures]
    problems = "\n".join(f"  text {name}: {cause}" for name, cause in failures.items())
    return (f"{len(failures)} of {len(sources)} language-model texts could not be obtained:\n"
            f"{problems}\n  To go on without {', '.join(failures)}, set sources = "
            f"{json.dumps(others)} under [lm] in your config (or DSTRAIN_LM__SOURCES="
            f"\"{','.join(others)}\") and run the same command again.")


def _obtain(path: Path, source: TextSource) -> str:
    """The verified sha256 of the source's file, downloading it again when the source moved on."""
    verified = read_json(verified_record(path))
    if path.exists() and verified and source.url and str(verified.get("origin", "")).startswith(("http:", "https:")):
        moved = verified.get("origin") != redact(source.url)  # the record keeps the url without its secrets
        if moved or (source.sha256 and source.sha256.lower() != verified.get("sha256")):
            log.info("%s: %s now points to another file; downloading it again", path.name, source.name)
            path.unlink()
    how = (f"It is the language-model text {source.name!r} ({source.licence}): set lm.source.{source.name}.url "
           "to a mirror, or leave it out of lm.sources.")
    return obtain(path, source.sha256, source.url, None, how)
