"""import: each dataset into ``imported/<lang>/<dataset>/``, shared by every run of the language.

Each dataset has its own completion record, so a change to one dataset's
parameters re-imports only that dataset.  One run at a time writes a dataset
(its lock), while any number may read its source archive (a shared lock that
keeps out a download replacing it).
"""
import logging
import shlex
import shutil

from dstrain.pipeline import locks
from dstrain.pipeline.atomic import read_json, remove_leftovers, write_json
from dstrain.pipeline.digests import digest
from dstrain.pipeline.errors import StageError
from dstrain.pipeline.paths import ImportedDataset
from dstrain.pipeline.registry import get_importer
from dstrain.pipeline.sources.archive import CorruptArchive
from dstrain.pipeline.sources.fetch import adopt, changed_since_verified, mark_damaged, verified_sha256

log = logging.getLogger("dstrain")


def clips(ctx):
    """(clips.format, clips.sdb_audio, clips.opus_complexity): how the sets are written; the audio inside only
    counts for databases, the complexity for Opus."""
    settings = ctx.config.settings.clips
    return settings.format, settings.sdb_audio, settings.opus_complexity


def dataset_fingerprint(ctx, dataset) -> str:
    corpus = get_importer(dataset.importer)
    archive = corpus.archive_path(dataset.params, ctx.paths.sources)
    clip_format, audio, complexity = clips(ctx)
    return digest({
        "importer": [dataset.importer, corpus.version],
        "params": dataset.params.model_dump(mode="json"),
        "normalizer": ctx.language.normalizer_fingerprint(),
        "source": verified_sha256(archive),
        # Each format's imports as before: WAVs are what an import wrote before there was a choice.
        **({"clips": [clip_format, audio] + ([complexity] if audio == "opus" else [])} if clip_format != "wav"
           else {}),
    })


def inputs(ctx) -> dict:
    return {d.key: dataset_fingerprint(ctx, d) for d in ctx.config.datasets}


def run(ctx) -> dict:
    counts, outputs = {}, {}
    for dataset in ctx.config.datasets:
        out = ImportedDataset(ctx.paths.imported(dataset.key))
        with locks.hold(out.dir, f"imported dataset {out.dir}"):
            remove_leftovers(out.dir)  # of an import that was killed: no one else writes here now
            record = _import(ctx, dataset, out)
        counts[dataset.key] = record["counts"]
        outputs[dataset.key] = record["fingerprint"]
    return {"counts": counts, "outputs": outputs}


def _import(ctx, dataset, out: ImportedDataset) -> dict:
    corpus = get_importer(dataset.importer)
    archive = corpus.archive_path(dataset.params, ctx.paths.sources)
    if changed_since_verified(archive):
        adopt(archive, dataset.params.sha256, "verified again: its size or date changed")
    wanted = dataset_fingerprint(ctx, dataset)
    record = read_json(out.record)  # read under the lock: another run may just have written it
    if ctx.step_done("import", record, wanted):
        log.info("%s: already imported", dataset.key)
        _tidy(ctx, dataset.key, out)
        return record
    try:
        with locks.hold(archive, f"source {archive}", shared=True):
            sha256 = verified_sha256(archive)
            if sha256 is None:
                raise StageError(f"{archive} is not verified (it is missing, or was found damaged); "
                                 "run the download stage first")
            manifest = corpus.prepare(archive, sha256, out.dir, ctx.language.normalize, dataset.params,
                                      ctx.config.workers, clips(ctx))
    except CorruptArchive as exc:
        mark_damaged(archive, exc.reason)
        raise StageError(
            f"{exc}.\n  It is marked as damaged and will not be used again: run the same command again and it is "
            "downloaded anew. If you placed it by hand, delete it and put a good copy at that path:\n"
            f"    rm {shlex.quote(str(archive.absolute()))}") from None
    record = {"fingerprint": wanted, "counts": manifest["counts"], "rejected": manifest["rejected"]}
    write_json(out.record, record)
    _tidy(ctx, dataset.key, out)
    return record


def _tidy(ctx, key: str, out: ImportedDataset) -> None:
    """Once the output is recorded, what was extracted to make it is not needed (unless clips.keep_extracted)."""
    if out.extracted.exists() and not ctx.config.settings.clips.keep_extracted:
        log.info("%s: removing %s (clips.keep_extracted = false)", key, out.extracted)
        shutil.rmtree(str(out.extracted))
