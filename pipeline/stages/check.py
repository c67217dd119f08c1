"""check: the cheap things that would otherwise fail hours later."""
import logging
import os
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, List

from dstrain.pipeline import __version__
from dstrain.pipeline.advice import ensure_writable
from dstrain.pipeline.atomic import read_json, write_json
from dstrain.pipeline.deepspeech import checkpoints, devices, scorer, smoke, trainer
from dstrain.pipeline.digests import digest
from dstrain.pipeline.errors import ConfigError, DstrainError
from dstrain.pipeline.formats.audio import decoder_report
from dstrain.pipeline.formats.payload import opus_available
from dstrain.pipeline.language import Language
from dstrain.pipeline.lm import kenlm

log = logging.getLogger("dstrain")
LOW_DISK_GB = 20


def ensure_language_cases(language: Language) -> None:
    failures = language.failing_cases()
    if failures:
        raise ConfigError(
            "language {!r}: {} of its own test cases fail, so no data was touched:\n  {}".format(
                language.code, len(failures), "\n  ".join(failures))
        )


def preflight(ctx) -> None:
    """Refuse bad settings before any heavy work, whatever stages were selected."""
    ensure_language_cases(ctx.language)
    ensure_writable(ctx.paths.root)
    if ctx.config.settings.optimize.enabled:
        trainer.find_optimizer(ctx.config.settings.optimize)


def without_check_stage(ctx) -> None:
    """--from a later stage: the check stage does not run, so what it verifies for the selected stages (the
    trainer, the tools, the smoke training) is verified here, before them."""
    if "check" not in ctx.selected:
        verify_tools(ctx)


def verify_tools(ctx) -> None:
    """What the selected stages need beyond the data: KenLM and the scorer tool for lm; for train, the trainer
    (DeepSpeech 0.9.3, TensorFlow 1.15, the decoder, optuna when optimize runs) and its GPU, then before the
    run's first training the smoke training.  Without train, the GPUs are only reported.  Every problem is
    told at once, so a new machine is set up in one round."""
    settings = ctx.config.settings
    problems: List[str] = []
    if "lm" in ctx.selected:
        _check_lm_tools(settings, problems)
    if "train" not in ctx.selected and not ctx.smoke:
        _refuse(problems)
        _check_devices(ctx)
        return
    optimizer = settings.optimize.enabled and "optimize" in ctx.selected
    if optimizer:
        _found("lm_optimizer.py", lambda: trainer.find_optimizer(settings.optimize), problems)
    report = _found("trainer", lambda: _probe_trainer(ctx, optimizer), problems)
    _refuse(problems)
    if _smoke_due(ctx):
        _smoke(ctx, report)


def _found(what: str, find: Callable[[], Any], problems: List[str]) -> Any:
    """``find()``, logged; a ConfigError is added to ``problems`` instead of raised."""
    try:
        found = find()
    except ConfigError as exc:
        problems.append(str(exc))
        return None
    if isinstance(found, Path):
        log.info("%s: %s", what, found)
    return found


def _refuse(problems: List[str]) -> None:
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        raise ConfigError("{} things to set before this run can work:\n{}".format(
            len(problems), "\n".join(f"{n}. {problem}" for n, problem in enumerate(problems, 1))))


def _check_lm_tools(settings, problems: List[str]) -> None:
    for name, path in (_found("KenLM", lambda: kenlm.find_tools(settings.lm.kenlm_bin), problems) or {}).items():
        log.info("%s: %s", name, path)
    _found(scorer.TOOL, lambda: scorer.find(settings.lm.scorer_tool), problems)


def _trainer_origin(settings) -> str:
    if settings.train.trainer_python:
        return "train.trainer_python"
    if os.environ.get("TRAINER_PYTHON"):
        return "TRAINER_PYTHON"
    return "the default: neither TRAINER_PYTHON nor train.trainer_python is set"


def _refuse_trainer(python: str, origin: str, problem: str) -> ConfigError:
    return ConfigError(
        f"the trainer's Python {python} ({origin}) cannot train: {problem}.\n  Training needs a Python with "
        "DeepSpeech 0.9.3's training package, ds_ctcdecoder 0.9.3 and TensorFlow 1.15. Set TRAINER_PYTHON (or "
        "train.trainer_python in your config) to it:\n    in the Docker image it is set already, to "
        "/usr/bin/python3;\n    on this machine, to the python of the virtualenv that docs/training.md builds: "
        "TRAINER_PYTHON=$HOME/deepspeech-0.9.3/venv/bin/python\n  Or prepare the data only, without training: "
        "--to lm (the language model too, which needs KenLM), or --to alphabet (neither).")


def _probe_trainer(ctx, optimizer: bool) -> devices.Report:
    """The trainer's Python, its packages and the device it will train on; refused with what to set."""
    settings = ctx.config.settings
    python, origin = trainer.trainer_python(settings.train), _trainer_origin(settings)
    try:
        report = devices.probe(python)
    except OSError as exc:
        raise _refuse_trainer(python, origin, f"it cannot be run ({exc.strerror or exc})") from None
    except (ValueError, subprocess.TimeoutExpired) as exc:
        raise _refuse_trainer(python, origin, f"it does not answer ({exc})") from None
    problems = devices.missing(report, optimizer)
    if problems:
        raise _refuse_trainer(python, origin, "; ".join(problems))
    log.info("trainer %s: %s", python, devices.describe_packages(report))
    _use_devices(python, report)
    return report


def _use_devices(python: str, report: devices.Report) -> None:
    """Say which GPUs the trainer will use, refuse one its CUDA cannot drive, warn when it is the CPU."""
    log.info("trainer %s: %s", python, devices.describe(report))
    problems = devices.unsupported(report)
    if problems:
        raise ConfigError("\n  ".join(problems))
    if not report.gpus:
        log.warning(devices.CPU_WARNING.format(cores=os.cpu_count()))


def _smoke_identity(ctx, report: devices.Report) -> str:
    """What a passed smoke training vouches for: this trainer, its packages and devices, and the settings that
    change the graph it builds or the files it exports."""
    settings = ctx.config.settings
    t = settings.train
    return digest({"python": trainer.trainer_python(t), "report": report._asdict(),
                   "train_cudnn": t.train_cudnn, "automatic_mixed_precision": t.automatic_mixed_precision,
                   "augment": t.augment, "formats": settings.export.formats, "version": __version__})


def _smoke_due(ctx) -> bool:
    if ctx.smoke is not None:
        return ctx.smoke
    # Once the run has a checkpoint, its training has proved all this.
    return ctx.config.settings.train.smoke and "train" in ctx.selected and not checkpoints.has_last(
        ctx.paths.checkpoints)


def _smoke(ctx, report: devices.Report) -> None:
    identity = _smoke_identity(ctx, report)
    passed = read_json(ctx.paths.smoke_record)
    if ctx.smoke is None and passed and passed.get("identity") == identity:
        log.info("smoke training: passed %s with this trainer, not repeated", passed.get("finished", "?"))
        return
    clips = smoke.find_clips(ctx.config.settings, ctx.paths, [d.key for d in ctx.config.datasets])
    if clips is None:
        log.warning("smoke training skipped: no clips to train on. DeepSpeech's sample (data/smoke_test in its "
                    "source tree) is looked for beside optimize.script; set optimize.script to the lm_optimizer.py "
                    "of your DeepSpeech v0.9.3 checkout, or run `dstrain check --smoke` once the import stage is "
                    "done. train.smoke = false turns this off.")
        return
    result = smoke.run(ctx.config.settings, ctx.language, ctx.paths.smoke, clips)
    write_json(ctx.paths.smoke_record, dict(result, identity=identity, finished=datetime.now(
        timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")))


def _check_devices(ctx) -> None:
    """Without train, the GPUs are only reported: the stages up to lm need no trainer."""
    python = trainer.trainer_python(ctx.config.settings.train)
    try:
        report = devices.probe(python)
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        report, cause = None, str(exc).strip()
    else:
        cause = report.errors.get("tensorflow")
    if report is None or report.tensorflow is None:
        log.warning("trainer %s: no TensorFlow to ask for GPUs (%s). The stages up to lm work without it; "
                    "train needs DeepSpeech 0.9.3's trainer (docs/training.md, or the Docker image).", python, cause)
        return
    _use_devices(python, report)


def inputs(ctx) -> dict:
    return {"language": ctx.language.code}


def run(ctx) -> dict:
    preflight(ctx)
    log.info("language %s: %d test cases pass", ctx.language.code, len(ctx.language.cases))
    free_gb = shutil.disk_usage(str(ctx.paths.root)).free / 1e9
    log.info("data root %s: writable, %.1f GB free", ctx.paths.root, free_gb)
    if free_gb < LOW_DISK_GB:
        log.warning("less than %d GB free: a large corpus needs several times its archive size", LOW_DISK_GB)
    ok, report = decoder_report()
    log.info("audio decoding: %s", report)
    if not ok:
        raise DstrainError("no MP3 decoder: install sox (with libsox-fmt-mp3) or ffmpeg, "
                           "or a libsndfile >= 1.1 for the soundfile package")
    clips = ctx.config.settings.clips
    if clips.format == "sdb" and clips.sdb_audio == "opus":
        ok, report = opus_available()
        log.info("Opus for sample databases: %s", report)
        if not ok:
            raise DstrainError(report)
    verify_tools(ctx)
    return {"counts": {"free_gb": round(free_gb, 1)}, "outputs": "ok"}
