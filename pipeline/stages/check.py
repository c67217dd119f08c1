"""check: the cheap things that would otherwise fail hours later."""
import logging
import os
import shutil
import subprocess

from dstrain.pipeline.advice import ensure_writable
from dstrain.pipeline.deepspeech import devices, trainer
from dstrain.pipeline.errors import ConfigError, DstrainError
from dstrain.pipeline.formats.audio import decoder_report
from dstrain.pipeline.language import Language

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
        trainer.find_optimizer(ctx.config.settings)


def _check_devices(ctx) -> None:
    """The GPUs the trainer will use: refuse one its CUDA cannot drive, warn when there is none."""
    python = trainer.trainer_python(ctx.config.settings)
    try:
        report = devices.probe(python)
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        log.warning("trainer %s: no TensorFlow to ask for GPUs (%s). The stages up to lm work without it; "
                    "train needs DeepSpeech 0.9.3's trainer (docs/training.md, or the Docker image).", python,
                    str(exc).strip())
        return
    log.info("trainer %s: %s", python, devices.describe(report))
    problems = devices.unsupported(report)
    if problems:
        raise ConfigError("\n  ".join(problems))
    if not report.gpus:
        log.warning(devices.CPU_WARNING.format(cores=os.cpu_count()))


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
    _check_devices(ctx)
    return {"counts": {"free_gb": round(free_gb, 1)}, "outputs": "ok"}
