"""download: every selected dataset's source archive in ``sources/``, verified."""
import logging

from importers import get_importer
from importers.fetch import SourceError, verified_sha256

log = logging.getLogger("dstrain")


def skip_hint(ctx, failed) -> str:
    others = [d.key for d in ctx.config.datasets if d.key not in failed]
    if not others:
        return ""
    return (f"\n  To go on without {', '.join(failed)}, add --datasets {','.join(others)} "
            "(or set datasets in your config) and run the same command again.")


def inputs(ctx) -> dict:
    """The parameters, and whether each archive is still the one verified (deleted or touched: redo)."""
    found = {}
    for d in ctx.config.datasets:
        archive = get_importer(d.importer).archive_path(d.params, ctx.paths.sources)
        found[d.key] = [d.importer, d.params.model_dump(mode="json"), verified_sha256(archive)]
    return found


def run(ctx) -> dict:
    """Try every dataset, so one unreachable source does not hold up the others' downloads."""
    digests, failures = {}, {}
    for dataset in ctx.config.datasets:
        importer = get_importer(dataset.importer)
        try:
            digests[dataset.key] = importer.download(dataset.params, ctx.paths.sources)
        except SourceError as exc:
            log.error("%s: %s", dataset.key, str(exc).split("\n")[0])  # the whole story comes once, at the end
            failures[dataset.key] = str(exc)
            continue
        log.info("%s: %s verified (sha256 %s)", dataset.key,
                 importer.archive_path(dataset.params, ctx.paths.sources).name, digests[dataset.key][:12])
    if failures:
        problems = "\n".join(f"  dataset {key}: {cause}" for key, cause in failures.items())
        raise SourceError(f"{len(failures)} of {len(ctx.config.datasets)} datasets could not be obtained:\n"
                          f"{problems}{skip_hint(ctx, list(failures))}")
    return {"counts": {"datasets": len(digests)}, "outputs": digests}
