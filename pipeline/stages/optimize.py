"""optimize: the alpha and beta that decode the dev set best, and a scorer rebuilt with them.

Off by default (``optimize.enabled``): every trial decodes the whole dev set, so 600 trials take
about as long as 600 evaluations.  Alpha weighs the language model against the sound; beta is a
bonus per word, against dropping short words.  DeepSpeech 0.9.3's lm_optimizer.py draws
``optimize.trials`` pairs in [0, alpha_max] x [0, beta_max] with optuna and keeps the one with the
lowest WER (CER for a character-based scorer).  Only the dev set is decoded, so the test set, which
was left out of the language model too, still measures the model fairly.

Writes ``optimize/alpha_beta.json`` and ``optimize/kenlm.scorer``; evaluate, export and package
then decode with them (deepspeech/decoding.py).  lm_optimizer.py keeps its trials in memory, so the search
runs in rounds (``optimize.trials_per_round``), each saved to ``optimize/trials.json`` as it ends: a
crash loses only the round under way.
"""
import logging
from pathlib import Path
from typing import Any, Dict, List

from tqdm import tqdm

from dstrain.pipeline.atomic import read_json, write_json
from dstrain.pipeline.deepspeech import batches, events, scorer, trainer
from dstrain.pipeline.digests import digest
from dstrain.pipeline.errors import StageError
from dstrain.pipeline.formats.deepspeech_csv import read_samples

log = logging.getLogger("dstrain")
def inputs(ctx) -> dict:
    settings = ctx.config.settings
    if not settings.optimize.enabled:
        return {"enabled": False}
    lm = ctx.record("lm")
    # Not the script's location, the rounds' size nor the batch size: they change nothing found, and a
    # search takes hours.
    return {
        "optimize": settings.optimize.model_dump(mode="json", exclude={"script", "trials_per_round"}),
        "lm": lm["outputs"] if lm else None,
        "beam_width": settings.evaluate.beam_width,
    }


def _round(ctx, script: Path, lm_scorer: Path, batch: int, trials: int, bar: tqdm) -> Dict[str, Any]:
    """One lm_optimizer.py run of ``trials`` trials: its best pair and every trial it reported."""
    settings = ctx.config.settings
    seen: List[events.Trial] = []
    best: List[events.Trial] = []

    def on_line(line: str) -> None:
        trial = events.parse_trial(line)
        if trial is not None:
            seen.append(trial)
            bar.update(1)
        final = events.parse_best(line)
        if final is not None:
            best.append(final)

    flags = trainer.optimizer_flags(trainer.Model.of(settings, ctx.paths), settings.evaluate.beam_width,
                                    settings.optimize, ctx.paths.clean_set("dev").data, lm_scorer, batch, trials)
    outcome = trainer.run(trainer.optimizer_command(settings.train, script, flags), trainer.environment(settings.train),
                          on_line)
    if not outcome.ok:
        bar.update(-len(seen))  # the round starts again
        raise trainer.Failed(outcome)
    if not best:
        raise StageError("lm_optimizer.py finished without printing its best alpha and beta; its last lines:"
                         "\n    " + "\n    ".join(outcome.tail))
    return {"trials": trials, "best": best[0]._asdict(), "reported": [t._asdict() for t in seen]}


def _search(ctx, lm_scorer: Path, key: str) -> events.Trial:
    """optimize.trials trials, in rounds whose results are saved as each ends, so a rerun goes on from there.

    Each round is a new optuna study (lm_optimizer.py keeps its study in memory), so its first trials are
    random again; the best of all rounds wins.
    """
    settings = ctx.config.settings
    o = settings.optimize
    script = trainer.find_optimizer(settings.optimize)
    saved = read_json(ctx.paths.optimize_trials)
    if not isinstance(saved, dict) or saved.get("search") != key or "optimize" in ctx.forced:
        saved = {"search": key, "rounds": []}
        write_json(ctx.paths.optimize_trials, saved)  # a crash before the first round must not revive the old
    done = sum(r["trials"] for r in saved["rounds"])
    if done:
        log.info("going on with the alpha/beta search: %d trials were done before, %d asked for", done, o.trials)
    # One batch of the whole dev set when the batch size is larger; a halved batch stays halved for the later rounds.
    dev_clips = sum(1 for _ in read_samples(ctx.paths.clean_set("dev").listing))
    batch = [batches.fit(settings.train.dev_batch_size, dev_clips).used]

    def attempt(size: int) -> Dict[str, Any]:
        batch[0] = size
        return _round(ctx, script, lm_scorer, size, min(o.trials_per_round, o.trials - done), bar)

    with tqdm(total=o.trials, initial=done, unit="trial", desc="alpha/beta") as bar:
        while done < o.trials:
            if saved["rounds"]:
                bar.set_postfix(best=f"{_best(saved['rounds']).value:.4f}")
            saved["rounds"].append(trainer.halving_batch(settings.train.min_batch_size, batch[0], "alpha/beta search",
                                                         attempt))
            done += saved["rounds"][-1]["trials"]
            write_json(ctx.paths.optimize_trials, saved)
            # A line per round, as per epoch in training: where no bar is drawn (not a terminal), the progress.
            best = _best(saved["rounds"])
            log.info("alpha/beta: %d of %d trials, the best so far alpha %.4f, beta %.4f (error rate %.4f)", done,
                     o.trials, best.alpha, best.beta, best.value)
    return _best(saved["rounds"])


def _best(rounds: List[Dict[str, Any]]) -> events.Trial:
    return min((events.Trial(**r["best"]) for r in rounds), key=lambda t: t.value)


def run(ctx) -> dict:
    settings = ctx.config.settings
    if not settings.optimize.enabled:
        log.info("off (optimize.enabled = false): the scorer keeps alpha %g and beta %g",
                 settings.lm.alpha, settings.lm.beta)
        return {"counts": {"optimized": 0}, "outputs": None}
    lm = ctx.record("lm")
    if lm is None or not ctx.paths.scorer.is_file():
        raise StageError(f"there is no scorer to tune ({ctx.paths.scorer}); the lm stage must run first")
    if not any(True for _ in read_samples(ctx.paths.clean_set("dev").listing)):
        raise StageError(f"the dev set is empty ({ctx.paths.clean_set('dev').data}): there is nothing to tune on")

    # The trials saved so far count for this checkpoint, scorer and ranges; more trials go on from them.
    search = inputs(ctx)
    del search["optimize"]["trials"]
    best = _search(ctx, ctx.paths.scorer, digest({"search": search, "train": ctx.record("train")["outputs"]}))
    log.info("best on the dev set: alpha %.4f, beta %.4f, error rate %.4f (configured: alpha %g, beta %g)",
             best.alpha, best.beta, best.value, settings.lm.alpha, settings.lm.beta)
    scorer.package(settings.lm, ctx.paths, best.alpha, best.beta, ctx.paths.optimized_scorer)
    write_json(ctx.paths.optimize_result, {
        "alpha": best.alpha, "beta": best.beta, "dev_error_rate": best.value, "trials": settings.optimize.trials,
        "configured": [settings.lm.alpha, settings.lm.beta],
        # deepspeech/decoding.py uses this scorer only while the lm stage's output is still this one.
        "lm": lm["outputs"]})
    log.info("evaluate, export and package now decode with %s", ctx.paths.optimized_scorer)
    return {"counts": {"optimized": 1, "alpha": round(best.alpha, 4), "beta": round(best.beta, 4),
                       "dev_error_rate": round(best.value, 4)},
            "outputs": {"alpha": best.alpha, "beta": best.beta, "lm": lm["outputs"]}}
