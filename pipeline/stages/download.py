"""download: every selected dataset's source archive in ``sources/``, verified."""
import logging

from importers import get_importer
from importers.fetch import SourceError, verified_sha256

log = logging.getLogger("dstrain")


def skip_hint(ctx, failed: str) -> str:
    others = [d.key for d in ctx.config.datasets if d.key != failed]
    if not others:
        return ""
    return ("\n  To go on without it, add --datasets {} (or set datasets in your config) "
            "and run the same command again.".format(",".join(others)))


def inputs(ctx) -> dict:
    """The parameters, and whether each archive is still the one verified (deleted or touched: redo)."""
    found = {}
    for d in ctx.config.datasets:
        archive = get_importer(d.importer).archive_path(d.params, ctx.paths.sources)
        found[d.key] = [d.importer, d.params.model_dump(mode="json"), verified_sha256(archive)]
    return found


def run(ctx) -> dict:
    digests = {}
    for dataset in ctx.config.datasets:
        importer = get_importer(dataset.importer)
        try:
            digests[dataset.key] = importer.download(dataset.params, ctx.paths.sources)
        except SourceError as exc:
            raise SourceError(f"dataset {dataset.key}: {exc}{skip_hint(ctx, dataset.key)}") from None
        log.info("%s: %s verified (sha256 %s)", dataset.key,
                 importer.archive_path(dataset.params, ctx.paths.sources).name, digests[dataset.key][:12])
    return {"counts": {"datasets": len(digests)}, "outputs": digests}
