"""Which scorer, alpha and beta the run decodes with: evaluate, export and package must agree on it.

The lm stage's scorer with the configured alpha and beta; once the optimize stage has found better
ones for the current language model, its rebuilt scorer with those.
"""
from pathlib import Path
from typing import NamedTuple, Optional

from dstrain.pipeline.atomic import read_json
from dstrain.pipeline.paths import DataRoot
from dstrain.pipeline.settings import Settings


class Decoder(NamedTuple):
    #: None: no scorer, the beam search spells words from the sound alone.
    scorer: Optional[Path]
    alpha: float
    beta: float
    #: "configured" or "optimized": where alpha and beta come from.
    origin: str
    #: Changes whenever any of the above does, so the stages that decode become stale.
    identity: Optional[str]


def optimized(paths: DataRoot, optimizing: bool) -> Optional[dict]:
    """The optimize stage's result, when it is on (``optimizing``: optimize.enabled), finished, and made for the
    current language model."""
    if not optimizing:
        return None
    record, lm = read_json(paths.record("optimize")), read_json(paths.record("lm"))
    result = read_json(paths.optimize_result)
    if not (record and lm and result and record.get("counts", {}).get("optimized")):
        return None
    if result.get("lm") != lm.get("outputs") or not paths.optimized_scorer.is_file():
        return None
    return result


def in_use(paths: DataRoot, settings: Settings) -> Decoder:
    """The decoder of the run under ``paths``: lm.alpha and lm.beta, unless the optimize stage (optimize.enabled)
    found better ones."""
    lm = settings.lm
    record = read_json(paths.record("lm"))
    if record is None or not paths.scorer.is_file():
        return Decoder(None, lm.alpha, lm.beta, "configured", None)
    best = optimized(paths, settings.optimize.enabled)
    if best is not None:
        return Decoder(paths.optimized_scorer, best["alpha"], best["beta"], "optimized",
                       "{}:{!r}:{!r}".format(best["lm"], best["alpha"], best["beta"]))
    return Decoder(paths.scorer, lm.alpha, lm.beta, "configured",
                   "{}:{!r}:{!r}".format(record["outputs"], lm.alpha, lm.beta))
