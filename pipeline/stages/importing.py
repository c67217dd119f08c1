"""import: each dataset into ``imported/<lang>/<dataset>/``, shared by every run of the language.

Each dataset has its own completion record, so a change to one dataset's
parameters re-imports only that dataset.
"""
import logging

from dstrain.pipeline.atomic import read_json, write_json
from dstrain.pipeline.digests import digest
from dstrain.pipeline.errors import StageError
from dstrain.pipeline.paths import ImportedDataset
from dstrain.pipeline.registry import get_importer
from dstrain.pipeline.sources.fetch import verified_sha256

log = logging.getLogger("dstrain")


def dataset_fingerprint(ctx, dataset) -> str:
    corpus = get_importer(dataset.importer)
    archive = corpus.archive_path(dataset.params, ctx.paths.sources)
    return digest({
        "importer": [dataset.importer, corpus.version],
        "params": dataset.params.model_dump(mode="json"),
        "normalizer": ctx.language.normalizer_fingerprint(),
        "source": verified_sha256(archive),
    })


def inputs(ctx) -> dict:
    return {d.key: dataset_fingerprint(ctx, d) for d in ctx.config.datasets}


def run(ctx) -> dict:
    counts, outputs = {}, {}
    for dataset in ctx.config.datasets:
        corpus = get_importer(dataset.importer)
        out = ImportedDataset(ctx.paths.imported(dataset.key))
        wanted = dataset_fingerprint(ctx, dataset)
        record = read_json(out.record)
        if ctx.step_done("import", record, wanted):
            log.info("%s: already imported", dataset.key)
        else:
            archive = corpus.archive_path(dataset.params, ctx.paths.sources)
            sha256 = verified_sha256(archive)
            if sha256 is None:
                raise StageError(f"{archive} changed since it was verified; rerun the download stage")
            manifest = corpus.prepare(archive, sha256, out.dir, ctx.language.normalize, dataset.params,
                                        ctx.config.workers)
            record = {"fingerprint": wanted, "counts": manifest["counts"], "rejected": manifest["rejected"]}
            write_json(out.record, record)
        counts[dataset.key] = record["counts"]
        outputs[dataset.key] = record["fingerprint"]
    return {"counts": counts, "outputs": outputs}
