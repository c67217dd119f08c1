"""evaluate: test the model's checkpoint (train.model_checkpoint) on the run's test set, and explain the result.

Decodes as deepspeech/decoding.py says: the run's scorer, with the alpha and beta the
optimize stage found when it ran; without a scorer it says so.
Writes reports/test_output.json (DeepSpeech's own), reports/metrics.json, the
loss curve and the report (Markdown, and HTML with the picture inside).
"""
import json
import logging
import shutil
from typing import Any, Dict, List

from dstrain.pipeline.atomic import temporary_path, write_json
from dstrain.pipeline.deepspeech import batches, decoding, trainer
from dstrain.pipeline.deepspeech.progress import Progress
from dstrain.pipeline.errors import StageError
from dstrain.pipeline.formats.deepspeech_csv import read_samples
from dstrain.pipeline.formats.sets import Origins
from dstrain.pipeline.reports import evaluation
from dstrain.pipeline.run_settings import note_used

log = logging.getLogger("dstrain")


def inputs(ctx) -> dict:
    settings = ctx.config.settings
    return {
        "decoder": decoding.in_use(ctx.paths, settings).identity,
        "evaluate": settings.evaluate.model_dump(mode="json"),
        "test_batch_size": settings.train.test_batch_size,
    }


def _test(ctx, decoder: decoding.Decoder, batch: int) -> List[Dict[str, Any]]:
    """DeepSpeech's test output, halving the batch size while it runs out of memory."""
    settings = ctx.config.settings
    model = trainer.Model.of(settings, ctx.paths)

    def attempt(batch: int) -> List[Dict[str, Any]]:
        with temporary_path(ctx.paths.test_output) as tmp:
            flags = trainer.test_flags(model, settings.evaluate, ctx.paths.clean_set("test").data, tmp, decoder, batch)
            outcome = trainer.run(trainer.command(settings.train, flags), trainer.environment(settings.train))
            if not outcome.ok:
                raise trainer.Failed(outcome)
            return json.loads(tmp.read_text(encoding="utf-8"))

    return trainer.halving_batch(settings.train.min_batch_size, batch, "test", attempt)


def rates(samples: List[Dict[str, Any]]) -> Dict[str, Any]:
    """WER and CER as DeepSpeech computes them: total edits over total length, capped at 1."""
    words = sum(s["word_length"] for s in samples)
    chars = sum(s["char_length"] for s in samples)
    return {
        "clips": len(samples),
        "wer": min(1.0, sum(s["word_distance"] for s in samples) / words) if words else None,
        "cer": min(1.0, sum(s["char_distance"] for s in samples) / chars) if chars else None,
        "mean_loss": sum(s["loss"] for s in samples) / len(samples) if samples else None,
    }


def ranked(samples: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """By WER, then CER (so "best" reads as best when many share a WER), then by falling loss, so the
    worst end with the model's most confident mistakes."""
    return sorted(samples, key=lambda s: (s["wer"], s["cer"], -s["loss"]))


def examples(samples: List[Dict[str, Any]], count: int) -> Dict[str, List[Dict[str, Any]]]:
    """Best, median and worst samples; with few samples, each shows once."""
    order = ranked(samples)
    count = min(count, max(1, len(order) // 3))
    middle = len(order) // 2
    keys = ("wav_filename", "src", "res", "wer", "cer", "loss")
    pick = {
        "best": order[:count],
        "median": order[max(0, middle - count // 2):middle + count - count // 2],
        "worst": order[-count:],
    }
    return {name: [{k: s[k] for k in keys} for s in chosen] for name, chosen in pick.items()}


def playable(chosen: Dict[str, List[Dict[str, Any]]], origins: Origins, directory) -> Dict[str, List[Dict[str, Any]]]:
    """The examples, each naming a WAV the report's player can play: a clip of a sample database is written out
    as one into ``directory`` (made anew)."""
    shutil.rmtree(str(directory), ignore_errors=True)
    return {name: [dict(s, wav_filename=origins.playable(s["wav_filename"], directory)) for s in group]
            for name, group in chosen.items()}


def run(ctx) -> dict:
    paths = ctx.paths
    settings = ctx.config.settings
    test_set = paths.clean_set("test")
    clips = sum(1 for _ in read_samples(test_set.listing))
    if not clips:
        raise StageError(f"the test set is empty ({test_set.data}): there is nothing to evaluate on")
    # One batch of the whole set when the batch size is larger: the test keeps its last batch, whatever its size.
    batch = batches.fit(settings.train.test_batch_size, clips)
    note_used(paths.config_file, ("train.test_batch_size",),
              {"train.test_batch_size": (batch.used, batches.why_not(batch.asked, batch, "test"))} if batch.lowered
              else {})
    decoder = decoding.in_use(paths, settings)
    scorer = decoder.scorer
    if scorer is None:
        note = (f"No scorer ({paths.scorer} was not built): the test decodes without a language model, so its "
                "WER is far higher than with one. Run the lm stage, then this one again.")
        log.warning(note)
    else:
        # Relative to the run: the note goes into the published model card.
        note = "Decoded with the scorer {} (alpha {:g}, beta {:g}{})".format(
            scorer.relative_to(paths.run), decoder.alpha, decoder.beta,
            ", found on the dev set by the optimize stage" if decoder.origin == "optimized" else "")
        log.info(note)
    samples = _test(ctx, decoder, batch.used)
    if not samples:
        raise StageError(f"DeepSpeech wrote no test results into {paths.test_output}")

    datasets: Dict[str, List[Dict[str, Any]]] = {}
    origins = Origins(test_set, paths.dataset_of)
    for sample in samples:
        name = origins.dataset(sample["wav_filename"])
        if name is not None:
            datasets.setdefault(name, []).append(sample)
    progress = Progress.load(paths.training_progress, paths.metrics)
    training = progress.metrics() if progress else {}
    test = {
        "scorer": str(scorer) if scorer else None,
        "lm_alpha": decoder.alpha if scorer else None,
        "lm_beta": decoder.beta if scorer else None,
        "alpha_beta": decoder.origin if scorer else None,
        "note": note,
        # The checkpoint these results belong to, as the train stage named it.
        "model": training.get("model"),
        "overall": rates(samples),
        "datasets": {name: rates(group) for name, group in sorted(datasets.items())},
        "examples": playable(examples(samples, settings.evaluate.report_count), origins, paths.report_clips),
    }
    test["advice"] = evaluation.advice(training, test)
    metrics = {"training": training, "test": test}
    write_json(paths.metrics, metrics)
    evaluation.write(paths, f"run {ctx.config.run_name} ({ctx.language.name})", metrics)
    overall = test["overall"]
    log.info("test: %d clips, WER %.3f, CER %.3f%s", overall["clips"], overall["wer"], overall["cer"],
             "" if scorer else " (without a scorer)")
    for line in test["advice"]:
        log.info("advice: %s", line)
    log.info("report: %s", paths.report_html)
    return {"counts": {"clips": overall["clips"], "wer": round(overall["wer"], 4), "cer": round(overall["cer"], 4)},
            "outputs": {"overall": overall, "datasets": test["datasets"], "decoder": decoder.identity}}
