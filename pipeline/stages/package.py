"""package: the release files in ``package/``, as the original pipeline published them, with a model card.

- ``model_tflite_<lang>.tar.xz``: output_graph.tflite, kenlm.scorer, alphabet.txt;
- ``model_tensorflow_<lang>.tar.xz``: output_graph.pbmm (else .pb), kenlm.scorer, alphabet.txt;
- ``checkpoint_<lang>.tar.xz``: the model's checkpoint only (train.model_checkpoint: the best-dev or the last),
  its state file, alphabet.txt and flags.txt;
- DeepSpeech's export zip; ``README.md`` (the model card); ``SHA256SUMS``.
"""
import dataclasses
import io
import logging
import shutil
import tarfile
from pathlib import Path
from typing import Dict, List, Optional, Union

from dstrain.pipeline.atomic import read_json, temporary_path, write_text
from dstrain.pipeline.deepspeech import checkpoints, decoding
from dstrain.pipeline.deepspeech.progress import Progress
from dstrain.pipeline.digests import hash_file
from dstrain.pipeline.errors import StageError
from dstrain.pipeline.reports import model_card

log = logging.getLogger("dstrain")
SUMS = "SHA256SUMS"
#: A member: a file to add, or (name, bytes) for one made here.
Member = Union[Path, tuple]


def inputs(ctx) -> dict:
    return {
        "decoder": decoding.in_use(ctx.paths, ctx.config.settings).identity,
        "metadata": dataclasses.asdict(ctx.language.model_metadata()),
        "datasets": [d.key for d in ctx.config.datasets],
    }


def _reproducible(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def write_tar(path: Path, members: List[Member]) -> List[str]:
    """An xz tarball of these files, flat (no directories), owned by nobody in particular."""
    names = []
    with temporary_path(path) as tmp, tarfile.open(str(tmp), "w:xz") as tar:
        for member in members:
            if isinstance(member, Path):
                tar.add(str(member), arcname=member.name, filter=_reproducible)
                names.append(member.name)
            else:
                name, data = member
                info = _reproducible(tarfile.TarInfo(name))
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
                names.append(name)
    log.info("%s: %s", path.name, ", ".join(names))
    return names


def _checkpoint_members(ctx) -> List[Member]:
    """The checkpoint the train stage named as the model, under the state file of its kind."""
    directory = ctx.paths.checkpoints
    progress = Progress.load(ctx.paths.training_progress, ctx.paths.metrics)
    model = progress.data.get("model") if progress else None
    if model is None or checkpoints.state_name(directory, model["state_file"]) != model["checkpoint"]:
        raise StageError(f"{directory} does not hold the checkpoint the train stage named as the model; run the "
                         "train stage")
    name = model["checkpoint"]
    # A state file naming the checkpoint by its bare name: valid wherever the archive is unpacked.
    state = f'model_checkpoint_path: "{name}"\nall_model_checkpoint_paths: "{name}"\n'.encode()
    members: List[Member] = [(model["state_file"], state)]
    members += checkpoints.files_of(directory, name)
    members.append(ctx.paths.alphabet)
    if (directory / checkpoints.FLAGS_FILE).is_file():
        members.append(directory / checkpoints.FLAGS_FILE)
    return members


def run(ctx) -> dict:
    paths = ctx.paths
    lang = ctx.language.code
    decoder = decoding.in_use(ctx.paths, ctx.config.settings)
    scorer: Optional[Path] = decoder.scorer
    extras = ([scorer] if scorer else []) + [paths.alphabet]
    paths.package.mkdir(parents=True, exist_ok=True)
    files: Dict[str, List[str]] = {}

    tflite = paths.model("tflite")
    if tflite.is_file():
        name = f"model_tflite_{lang}.tar.xz"
        files[name] = write_tar(paths.package / name, [tflite] + extras)
    else:
        log.warning("no TFLite model to package (export.formats has no tflite)")
    graph = next((p for p in (paths.model("pbmm"), paths.model("pb")) if p.is_file()), None)
    if graph is not None:
        name = f"model_tensorflow_{lang}.tar.xz"
        files[name] = write_tar(paths.package / name, [graph] + extras)
    else:
        log.warning("no TensorFlow model to package (export.formats has no pb)")
    name = f"checkpoint_{lang}.tar.xz"
    files[name] = write_tar(paths.package / name, _checkpoint_members(ctx))
    exported_zip = paths.model_zip(ctx.language.model_metadata().language)
    if exported_zip.is_file():
        with temporary_path(paths.package / exported_zip.name) as tmp:
            shutil.copyfile(str(exported_zip), str(tmp))
        files[exported_zip.name] = ["output_graph.tflite", "kenlm.scorer", "metadata (.md)"]

    metrics = read_json(paths.metrics) or {}
    config = ctx.config
    subject = model_card.Subject(ctx.language, config.settings.train,
                                 model_card.datasets(paths, [d.key for d in config.datasets]), config.lm_sources,
                                 config.settings.lm.train_transcripts)
    write_text(paths.package / "README.md", model_card.render(subject, files, metrics, decoder))
    kept = set(files) | {"README.md", SUMS}
    for stale in paths.package.iterdir():
        if stale.name not in kept:
            stale.unlink()
    sums = {name: hash_file(paths.package / name, label="sha256").hexdigest() for name in sorted(kept - {SUMS})}
    write_text(paths.package / SUMS, "".join(f"{digest}  {name}\n" for name, digest in sums.items()))
    log.info("package: %s (%d files, checksums in %s)", paths.package, len(sums), SUMS)
    return {"counts": {"files": len(sums) + 1}, "outputs": sums}
