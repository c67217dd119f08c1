"""download: every selected dataset's source archive in ``sources/``, verified; and the language model's texts
when the run goes as far as the lm stage, so that one that cannot be had stops the run before the import."""
import contextlib
import logging
from functools import partial

from dstrain.pipeline.lm import texts
from dstrain.pipeline.registry import get_importer
from dstrain.pipeline.sources.fetch import SourceError, again, obtain_each, verified_sha256

log = logging.getLogger("dstrain")


def skip_hint(ctx, failed) -> str:
    others = [d.key for d in ctx.config.datasets if d.key not in failed]
    if not others:
        return (f"\n  None of them could be obtained. Once one of them is in place, run with just that one: add "
                f"--datasets {failed[0]} (or a comma-separated list of those in place; or set datasets in your "
                "config) and run the same command again.")
    return (f"\n  To go on without {', '.join(failed)}, add --datasets {','.join(others)} "
            "(or set datasets in your config) and run the same command again.")


def inputs(ctx) -> dict:
    """The parameters, and whether each archive is still the one verified (deleted or touched: redo)."""
    found = {}
    for d in ctx.config.datasets:
        archive = get_importer(d.importer).archive_path(d.params, ctx.paths.sources)
        found[d.key] = [d.importer, d.params.model_dump(mode="json"), verified_sha256(archive)]
    if _wants_texts(ctx) and not texts.all_verified(ctx.paths.sources, ctx.config.lm_sources):
        found["language-model texts"] = "missing"  # only then: a run up to import never asks for them
    return found


def _wants_texts(ctx) -> bool:
    """Whether this run gets the texts here: it runs this stage and goes on to lm.  (With --from or --only
    past download, the texts do not make a done download stale, nor anything after it.)"""
    return {"download", "lm"} <= ctx.selected


def _download(ctx, dataset) -> str:
    corpus = get_importer(dataset.importer)
    sha = corpus.download(dataset.params, ctx.paths.sources)
    log.info("%s: %s verified (sha256 %s)", dataset.key,
             corpus.archive_path(dataset.params, ctx.paths.sources).name, sha[:12])
    return sha


def run(ctx) -> dict:
    """Try every dataset, so one unreachable source does not hold up the others' downloads.

    ``--force download`` fetches every source anew (one placed by hand, with no address, is hashed anew).
    """
    with again() if "download" in ctx.forced else contextlib.nullcontext():
        digests, failures = obtain_each({d.key: partial(_download, ctx, d) for d in ctx.config.datasets})
        sources = ctx.config.lm_sources if _wants_texts(ctx) else ()
        shas, missing = texts.obtain_all(ctx.paths.sources, sources)
    told = []
    if failures:
        problems = "\n".join(f"  dataset {key}: {cause}" for key, cause in failures.items())
        told.append(f"{len(failures)} of {len(ctx.config.datasets)} datasets could not be obtained:\n"
                    f"{problems}{skip_hint(ctx, list(failures))}")
    if missing:
        told.append(texts.failure(missing, sources))
    if told:
        raise SourceError("\n".join(told))
    # The texts are not among the outputs: the import, which does not read them, is not redone for them.
    return {"counts": {"datasets": len(digests), "texts": len(shas)}, "outputs": digests}
