"""export: the model's checkpoint (train.model_checkpoint) as the models DeepSpeech 0.9.3's clients load.

``output_graph.tflite`` (the TensorFlow Lite runtime: Android, Raspberry Pi,
deepspeech-tflite), ``output_graph.pb`` and ``output_graph.pbmm`` (the same
graph with its weights mapped from disk: the ``deepspeech`` packages load it
faster, in less memory), and DeepSpeech's zip (the TFLite model with the
scorer).  Every model carries the language's metadata.
"""
import dataclasses
import logging
import os
import shutil
from pathlib import Path
from typing import Dict, Optional

from dstrain.pipeline.atomic import temporary_path
from dstrain.pipeline.deepspeech import decoding, trainer
from dstrain.pipeline.digests import hash_file
from dstrain.pipeline.errors import ConfigError, StageError
from dstrain.pipeline.tools import run_tool

log = logging.getLogger("dstrain")
#: DeepSpeech's file extension for each export.
EXTENSIONS = {"pb": "pb", "tflite": "tflite"}


def _zip(ctx) -> Path:
    return ctx.paths.model_zip(ctx.language.model_metadata().language)


def inputs(ctx) -> dict:
    x = ctx.config.settings.export
    return {
        "formats": sorted(x.formats),
        "beam_width": x.beam_width,
        "metadata": dataclasses.asdict(ctx.language.model_metadata()),
        "decoder": decoding.in_use(ctx.paths, ctx.config.settings).identity if "zip" in x.formats else None,
        "pbmm": (x.convert_graphdef_memmapped_format or "dstrain") if "pb" in x.formats else None,
    }


def _export(ctx, kind: str, scorer: Optional[Path]) -> Path:
    """Run one DeepSpeech export into a scratch directory; returns DeepSpeech's --export_dir."""
    settings = ctx.config.settings
    scratch = ctx.paths.export_scratch(kind)
    shutil.rmtree(str(scratch), ignore_errors=True)
    # --export_zip wants an existing, empty directory and zips it into <directory>.zip beside it.
    export_dir = scratch / _zip(ctx).stem if kind == "zip" else scratch
    export_dir.mkdir(parents=True)
    flags = trainer.export_flags(trainer.Model.of(settings, ctx.paths), ctx.language.model_metadata(),
                                 settings.export.beam_width, kind, export_dir, scorer)
    outcome = trainer.run(trainer.command(settings.train, flags), trainer.environment(settings.train))
    if not outcome.ok:
        raise StageError("DeepSpeech's {} export failed (exit code {}); its last lines:\n    {}".format(
            kind, outcome.returncode, "\n    ".join(outcome.tail)))
    return export_dir


def _move_model(ctx, kind: str, export_dir: Path) -> Path:
    extension = EXTENSIONS[kind]
    model = export_dir / ("output_graph." + extension)
    if not model.is_file():
        raise StageError(f"DeepSpeech's {kind} export wrote no {model.name} in {export_dir}")
    metadata = sorted(export_dir.glob("*.md"))
    if metadata:  # <author>_<model name>_<version>.md, DeepSpeech's record of the model's metadata
        os.replace(str(metadata[0]), str(ctx.paths.model_metadata(extension)))
    os.replace(str(model), str(ctx.paths.model(extension)))
    return ctx.paths.model(extension)


def _memmapped(ctx, pb: Path) -> Path:
    settings = ctx.config.settings
    configured = settings.export.convert_graphdef_memmapped_format
    pbmm = ctx.paths.model("pbmm")
    with temporary_path(pbmm) as tmp:
        if configured is None:
            run_tool(trainer.memmapped_command(settings.train, pb, tmp))
        else:
            tool = shutil.which(configured)
            if tool is None:
                raise ConfigError(f"export.convert_graphdef_memmapped_format: {configured} is not an executable "
                                  "command or file; leave it unset to use dstrain's own converter")
            run_tool([tool, "--in_graph=" + str(pb), "--out_graph=" + str(tmp)])
    return pbmm


def run(ctx) -> dict:
    paths = ctx.paths
    formats = ctx.config.settings.export.formats
    scorer = decoding.in_use(ctx.paths, ctx.config.settings).scorer
    paths.models.mkdir(parents=True, exist_ok=True)
    produced: Dict[str, Path] = {}
    for kind in ("tflite", "pb", "zip"):
        if kind not in formats:
            continue
        if kind == "zip" and scorer is None:
            log.warning("no zip: DeepSpeech's --export_zip packs the scorer with the model, and this run has none "
                        "(%s); run the lm stage, then export again", paths.scorer)
            continue
        export_dir = _export(ctx, kind, scorer)
        if kind == "zip":
            os.replace(str(export_dir.parent / (export_dir.name + ".zip")), str(_zip(ctx)))
            produced["zip"] = _zip(ctx)
        else:
            produced[kind] = _move_model(ctx, kind, export_dir)
        shutil.rmtree(str(paths.export_scratch(kind)))
    if "pb" in produced:
        produced["pbmm"] = _memmapped(ctx, produced["pb"])
    # What an earlier export left and this one did not make would be packaged by mistake.
    kept = set(produced.values()) | {paths.model_metadata(EXTENSIONS[k]) for k in produced if k in EXTENSIONS}
    for stale in paths.models.iterdir():
        if stale.is_file() and stale not in kept:
            stale.unlink()
    digests = {path.name: hash_file(path, label="sha256").hexdigest() for path in produced.values()}
    for name, digest in sorted(digests.items()):
        log.info("%s  sha256 %s", paths.models / name, digest)
    return {"counts": {"models": len(produced)}, "outputs": digests}
