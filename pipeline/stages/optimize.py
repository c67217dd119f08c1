"""optimize: the alpha and beta that decode the dev set best, and a scorer rebuilt with them.

Off by default (``optimize.enabled``): every trial decodes the whole dev set, so 600 trials take
about as long as 600 evaluations.  Alpha weighs the language model against the sound; beta is a
bonus per word, against dropping short words.  DeepSpeech 0.9.3's lm_optimizer.py draws
``optimize.trials`` pairs in [0, alpha_max] x [0, beta_max] with optuna and keeps the one with the
lowest WER (CER for a character-based scorer).  Only the dev set is decoded, so the test set, which
was left out of the language model too, still measures the model fairly.

Writes ``optimize/alpha_beta.json`` and ``optimize/kenlm.scorer``; evaluate, export and package
then decode with them (pipeline.decoding).  optuna keeps its trials in memory, so a crash loses
them: the stage starts its search again.
"""
import logging
from pathlib import Path
from typing import List

from tqdm import tqdm

from importers.deepspeech_csv import read_samples
from pipeline import scorer, trainer
from pipeline.atomic import write_json
from pipeline.errors import ConfigError, StageError

log = logging.getLogger("dstrain")
HOW_TO_GET = ("lm_optimizer.py is at the top of DeepSpeech v0.9.3's source tree (git clone --branch v0.9.3 "
              "https://github.com/mozilla/DeepSpeech), not in the deepspeech_training package.")


def find_script(settings) -> Path:
    script = settings.optimize.script
    if script is None:
        raise ConfigError("optimize.enabled is true but optimize.script is not set. " + HOW_TO_GET
                          + " Set optimize.script to its path.")
    script = script.expanduser()
    if not script.is_file():
        raise ConfigError(f"optimize.script: {script} is not a file. " + HOW_TO_GET)
    return script


def inputs(ctx) -> dict:
    settings = ctx.config.settings
    if not settings.optimize.enabled:
        return {"enabled": False}
    lm = ctx.record("lm")
    # Not the script's location nor the batch size: they change nothing found, and a search takes hours.
    return {
        "optimize": settings.optimize.model_dump(mode="json", exclude={"script"}),
        "lm": lm["outputs"] if lm else None,
        "beam_width": settings.evaluate.beam_width,
    }


def _search(ctx, lm_scorer: Path) -> trainer.Trial:
    settings = ctx.config.settings
    script = find_script(settings)
    trials: List[trainer.Trial] = []
    best: List[trainer.Trial] = []

    def attempt(batch: int) -> trainer.Trial:
        trials.clear()
        best.clear()
        flags = trainer.optimizer_flags(ctx, ctx.paths.clean_csv("dev"), lm_scorer, batch)
        with tqdm(total=settings.optimize.trials, unit="trial", desc="alpha/beta") as bar:
            def on_line(line: str) -> None:
                trial = trainer.parse_trial(line)
                if trial is not None:
                    trials.append(trial)
                    bar.update(1)
                    found = [t for t in trials if t.value is not None]
                    if found:
                        bar.set_postfix(best=f"{min(t.value for t in found):.4f}")
                final = trainer.parse_best(line)
                if final is not None:
                    best.append(final)

            outcome = trainer.run(trainer.optimizer_command(settings, script, flags),
                                  trainer.environment(settings), on_line)
        if not outcome.ok:
            raise trainer.Failed(outcome)
        if not best:
            raise StageError("lm_optimizer.py finished without printing its best alpha and beta; its last lines:"
                             "\n    " + "\n    ".join(outcome.tail))
        return best[0]

    found = trainer.halving_batch(settings, settings.train.dev_batch_size, "alpha/beta search", attempt)
    write_json(ctx.paths.optimize_trials, [t._asdict() for t in trials])
    return found


def run(ctx) -> dict:
    settings = ctx.config.settings
    if not settings.optimize.enabled:
        log.info("off (optimize.enabled = false): the scorer keeps alpha %g and beta %g",
                 settings.lm.alpha, settings.lm.beta)
        return {"counts": {"optimized": 0}, "outputs": None}
    lm = ctx.record("lm")
    if lm is None or not ctx.paths.scorer.is_file():
        raise StageError(f"there is no scorer to tune ({ctx.paths.scorer}); the lm stage must run first")
    if not any(True for _ in read_samples(ctx.paths.clean_csv("dev"))):
        raise StageError(f"the dev set is empty ({ctx.paths.clean_csv('dev')}): there is nothing to tune on")

    best = _search(ctx, ctx.paths.scorer)
    log.info("best on the dev set: alpha %.4f, beta %.4f, error rate %.4f (configured: alpha %g, beta %g)",
             best.alpha, best.beta, best.value, settings.lm.alpha, settings.lm.beta)
    scorer.package(ctx, best.alpha, best.beta, ctx.paths.optimized_scorer)
    write_json(ctx.paths.optimize_result, {
        "alpha": best.alpha, "beta": best.beta, "dev_error_rate": best.value, "trials": settings.optimize.trials,
        "configured": [settings.lm.alpha, settings.lm.beta],
        # pipeline.decoding uses this scorer only while the lm stage's output is still this one.
        "lm": lm["outputs"]})
    log.info("evaluate, export and package now decode with %s", ctx.paths.optimized_scorer)
    return {"counts": {"optimized": 1, "alpha": round(best.alpha, 4), "beta": round(best.beta, 4),
                       "dev_error_rate": round(best.value, 4)},
            "outputs": {"alpha": best.alpha, "beta": best.beta, "lm": lm["outputs"]}}
