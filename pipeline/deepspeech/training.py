"""What training does, across DeepSpeech invocations: it resumes, halves the batches, keeps the best checkpoint.

Training is finished after every configured epoch, counted across resumes, or an early stop.  A rerun after
a crash continues from the last checkpoint for the epochs still to train; out of memory halves the batch
sizes and resumes; the best checkpoint of the whole run is kept whichever invocation found it; a forced
retrain that was interrupted is continued by the plain rerun.  Starting from another model is explicit:
fine tuning when its alphabet is this run's, transfer learning when it is not (start.py).

It reads only its ``Plan`` (plan.py): the settings it needs and the files it reads and writes.
"""
import logging
import shutil
from typing import Any, Dict, Optional, Tuple

from dstrain.pipeline.deepspeech import batches, checkpoints, trainer
from dstrain.pipeline.deepspeech import start as starting
from dstrain.pipeline.deepspeech.plan import Plan
from dstrain.pipeline.deepspeech.progress import Progress
from dstrain.pipeline.digests import file_digest
from dstrain.pipeline.errors import StageError
from dstrain.pipeline.formats.deepspeech_csv import read_samples

log = logging.getLogger("dstrain")

#: Settings that change what is learnt; changing one makes the stage stale (it then trains what is left).
HYPERPARAMETERS = ("epochs", "train_batch_size", "dev_batch_size", "learning_rate", "dropout_rate", "early_stop",
                   "es_epochs", "es_min_delta", "reduce_lr_on_plateau", "plateau_epochs", "plateau_reduction",
                   "augment")


def inputs(plan: Plan) -> Dict[str, Any]:
    """What the train stage's fingerprint covers."""
    t = plan.train
    # model_checkpoint picks the model among the checkpoints: the stage's record names it, so a change
    # reruns the stage (at once when training is finished) and everything downstream.
    return {"lineage": starting.lineage(plan), "source": starting.source_identity(plan),
            "hyperparameters": {name: getattr(t, name) for name in HYPERPARAMETERS},
            "model_checkpoint": t.model_checkpoint}


def _describe_lineage(found: Dict[str, Any], keys) -> str:
    return ", ".join(f"{key} {found.get(key)}" for key in keys)


def _refuse(plan: Plan, old: Dict[str, Any], new: Dict[str, Any]) -> StageError:
    changed = [key for key in new if old.get(key) != new[key]]
    return StageError(
        "the checkpoints in {} belong to other settings ({} changed), and a checkpoint cannot change its "
        "shape.\n  they were trained with: {}\n  the settings now ask for: {}\n"
        "  To keep them and train these settings apart, add --run NAME (a new run).\n"
        "  To throw them away and train again from the start, add --force train "
        "(this deletes {}).".format(plan.checkpoints, ", ".join(changed), _describe_lineage(old, new),
                                   _describe_lineage(new, new), plan.checkpoints))


def _discard(plan: Plan) -> None:
    directory = plan.checkpoints
    count = sum(1 for p in directory.rglob("*") if p.is_file()) if directory.exists() else 0
    log.warning("--force train: deleting the %d files in %s, the feature cache and the TensorBoard summaries; "
                "training starts over", count, directory)
    for path in (directory, plan.feature_cache.parent, plan.summaries):
        shutil.rmtree(str(path), ignore_errors=True)


def _check_data(plan: Plan) -> None:
    for split, found in (("train", plan.train_set), ("dev", plan.dev_set)):
        if not any(True for _ in read_samples(found.listing)):
            raise StageError(f"the {split} set is empty ({found.data}): DeepSpeech needs training clips, and dev "
                             "clips to pick the best model and stop early")


def finished(progress: Progress, epochs: int) -> bool:
    """Whether the training this account describes is over, for ``epochs`` configured epochs.  One that never
    took a step (a batch size larger than its training set, before dstrain lowered it) learnt nothing: it is
    not over, whatever its epochs say."""
    over = progress["stopped_early"] or progress["epochs_done"] >= epochs
    return over and not batches.took_no_step(progress["epochs"])


def _load_progress(plan: Plan) -> Progress:
    current = starting.lineage(plan)
    epochs = plan.train.epochs
    progress = Progress.load(plan.progress, plan.metrics)
    if progress is not None and progress.running_elsewhere():
        raise StageError("this run is already training (dstrain process {}); wait for it, or stop it first".format(
            progress.unfinished()["pid"]))
    if progress is not None:
        progress.close_interrupted()
    if progress is not None and not plan.forced and batches.took_no_step(progress["epochs"]):
        log.warning("the earlier training took no step in its %d epochs (each batch was larger than the training "
                    "set, so DeepSpeech dropped it): it learnt nothing, so training starts over",
                    progress["epochs_done"])
        _discard(plan)
        progress = None
    if plan.forced:
        # The record first: a forced training interrupted from here on shows as not done, and the rerun
        # continues it instead of finding the previous training "up to date".
        plan.record.unlink(missing_ok=True)
        if progress is not None and progress.data.get("forced") and not finished(progress, epochs):
            log.warning("--force train: an earlier --force train was interrupted after %d of %d epochs; as asked, "
                        "its training is deleted and starts over. To continue it instead, run the same command "
                        "without --force train.", progress["epochs_done"], epochs)
        _discard(plan)
        progress = Progress.new(plan.progress, plan.metrics, current, plan.train)
        progress["forced"] = True
        progress.save()
        return progress
    if progress is not None and progress.data.get("forced") and not finished(progress, epochs):
        log.warning("continuing the training that --force train started, interrupted after %d of %d epochs: it "
                    "is not started over (add --force train to start over once more)", progress["epochs_done"],
                    epochs)
    if progress is None and checkpoints.has_any(plan.checkpoints):
        raise StageError(f"{plan.checkpoints} holds checkpoints that dstrain did not record "
                         f"({plan.progress} is missing), so it cannot tell how far they went. "
                         "Move them away, or add --force train to delete them and start over.")
    elif progress is not None and progress["lineage"] != current:
        if checkpoints.has_any(plan.checkpoints):
            raise _refuse(plan, progress["lineage"], current)
        progress = None  # nothing was saved under the old settings
    if progress is None:
        progress = Progress.new(plan.progress, plan.metrics, current, plan.train)
    return progress


def _feature_cache(plan: Plan, progress: Progress):
    t = plan.train
    if not t.feature_cache:
        return None
    if t.augment:
        log.info("feature cache off: with augmentations it would freeze the first epoch's augmented features")
        return None
    cache = plan.feature_cache
    data = file_digest(plan.train_set.listing)
    if progress["feature_cache_data"] != data:
        if cache.parent.exists():
            log.info("the training set changed: clearing the feature cache %s", cache.parent)
            shutil.rmtree(str(cache.parent))
        progress["feature_cache_data"] = data
    cache.parent.mkdir(parents=True, exist_ok=True)
    for lock in cache.parent.glob("*.lockfile"):
        # Left by a killed run; TensorFlow refuses to fill the cache while one exists.
        lock.unlink()
    return cache


def _halve_batches(plan: Plan, progress: Progress) -> None:
    floor = plan.train.min_batch_size
    old = (progress["train_batch_size"], progress["dev_batch_size"])
    new = tuple(max(floor, size // 2) for size in old)
    if new == old:
        raise StageError(
            f"DeepSpeech ran out of memory with batch sizes {old[0]} (train) and {old[1]} (dev), and "
            f"train.min_batch_size = {floor} allows no smaller. Lower train.n_hidden, turn on "
            "train.automatic_mixed_precision, drop the longest clips, or use a GPU with more memory.")
    progress["train_batch_size"], progress["dev_batch_size"] = new
    # It happened in the epoch being trained, the one after those done.
    progress.event("out_of_memory", epoch=progress["epochs_done"] + 1, train_batch_size=[old[0], new[0]],
                   dev_batch_size=[old[1], new[1]])
    log.warning("out of memory: batch sizes %d/%d (train/dev) halved to %d/%d; resuming from the last checkpoint",
                old[0], old[1], new[0], new[1])


def _train_once(plan: Plan, progress: Progress, found: Optional[starting.Source]) -> trainer.Outcome:
    t = plan.train
    start = starting.choose(plan, found, progress["learning_rate"])
    remaining = t.epochs - progress["epochs_done"]
    train, dev = _fit_batches(plan, progress)
    flags = trainer.train_flags(plan.graph, t, (plan.train_set.data, plan.dev_set.data), start, remaining,
                                (train.used, dev.used), _feature_cache(plan, progress))
    cmd = trainer.command(t, flags)
    _keep_best(plan, progress)
    best = progress["best"]
    if best is not None:
        checkpoints.protect_best(plan.checkpoints, plan.best_backup, best["checkpoint"])
    if start.reset_learning_rate:
        progress["current_learning_rate"] = t.learning_rate
    progress["learning_rate"] = t.learning_rate
    progress["train_data"] = file_digest(plan.train_set.listing)
    log.info("training epochs %d to %d of %d (%s)", progress["epochs_done"] + 1, t.epochs, t.epochs,
             "continuing from the last checkpoint" if start.load_train == "last"
             else "from scratch" if start.load_train == "init" else f"from {start.load_dir}")
    progress.begin(cmd, start.load_train, start.load_dir, remaining, train.steps)
    outcome = None
    try:
        outcome = trainer.run(cmd, trainer.environment(t), lambda line: _on_line(t.epochs, progress, line))
    finally:
        _keep_best(plan, progress)
        if outcome is None:
            progress.end("aborted", -1)
    return outcome


def _on_line(epochs: int, progress: Progress, line: str) -> None:
    """Each finished epoch on the console, numbered from 1 over the whole run (DeepSpeech's own lines, numbered
    from 0 in each invocation, go to the stage log)."""
    best = progress["best"]  # before this line's epoch: DeepSpeech says it saved a new best after its loss
    event = progress.feed(line)
    if event is not None and event.kind == "dev_loss":
        epoch = progress["epochs"][-1]
        loss = epoch["dev_loss"]
        lowest = loss is not None and (best is None or best["dev_loss"] is None or loss < best["dev_loss"])
        log.log(logging.INFO if None not in (loss, epoch["train_loss"]) else logging.WARNING,
                "epoch %d of %d: training loss %s, dev loss %s%s", epoch["epoch"], epochs,
                _loss(epoch["train_loss"]), _loss(loss), " (the lowest so far)" if lowest else
                "" if best is None else f" (the lowest: epoch {best['epoch']}, {_loss(best['dev_loss'])})")


def _loss(value: Optional[float]) -> str:
    return "infinite or NaN" if value is None else f"{value:.2f}"


def _keep_best(plan: Plan, progress: Progress) -> None:
    """The best checkpoint of the whole run is the one the best state file names, whichever invocation found
    it; also after a kill -9 that left DeepSpeech's own, worse, "best" named."""
    directory = plan.checkpoints
    checkpoints.relativize(directory)
    best = progress["best"]
    if best is not None and checkpoints.restore_best(directory, plan.best_backup, best["checkpoint"]):
        log.warning("after the resume DeepSpeech saved a worse 'best' model; epoch %d's (dev loss %s) is kept",
                    best["epoch"], best["dev_loss"])
    checkpoints.prune(directory)


def _fit_batches(plan: Plan, progress: Progress) -> Tuple[batches.Fitted, batches.Fitted]:
    """The train and dev batch sizes this invocation uses: those in force (configured, or halved after running
    out of memory), lowered to the set's size where they are larger; recorded in the account."""
    sizes = [sample.wav_filesize for sample in read_samples(plan.train_set.listing)]
    train = batches.fit(progress["train_batch_size"], len(sizes))
    dev = batches.fit(progress["dev_batch_size"], sum(1 for _ in read_samples(plan.dev_set.listing)))
    if train.lowered:
        log.warning("%s", batches.describe_lowered(train))
    else:
        left = batches.left_out(sizes, train.used)
        if left is not None:
            log.warning("%s", batches.describe(left))
    if dev.lowered:
        log.info("dev_batch_size %d is more than the dev set (%s): validation uses one batch of it all", dev.asked,
                 batches.clips(dev.clips))
    progress["batches"] = {"train": train._asdict(), "dev": dev._asdict()}  # keyed as batches.SETS
    return train, dev


def used(progress: Progress) -> Dict[str, Tuple[int, str]]:
    """The batch sizes the training used instead of the configured ones, and why, by setting."""
    found = {}
    for (split, what), configured in zip(batches.SETS.items(), progress["configured_batch"]):
        fitted = (progress.data.get("batches") or {}).get(split)
        why = batches.why_not(configured, batches.Fitted(**fitted), what) if fitted else None
        if why is not None:
            found[f"train.{split}_batch_size"] = (fitted["used"], why)
    return found


def _model(plan: Plan, progress: Progress) -> Dict[str, Any]:
    """The checkpoint that is the model (train.model_checkpoint), named once for every later stage."""
    which = plan.train.model_checkpoint
    directory = plan.checkpoints
    name = checkpoints.state_name(directory, checkpoints.STATE_OF[which])
    if name is None:
        raise StageError(f"training finished but {directory} has no {which} checkpoint "
                         f"({checkpoints.STATE_OF[which]} naming an existing .index)")
    if which == "best":
        epoch, dev_loss = progress["best"]["epoch"], progress["best"]["dev_loss"]
    else:
        epoch, dev_loss = progress["epochs"][-1]["epoch"], progress["epochs"][-1]["dev_loss"]
    return {"which": which, "checkpoint": name, "epoch": epoch, "dev_loss": dev_loss,
            "state_file": checkpoints.STATE_OF[which], "digest": checkpoints.content_digest(directory, name)}


def _prepare(plan: Plan) -> Tuple[Progress, Optional[starting.Source]]:
    """The account to go on with, and the model to start from (None once the run has checkpoints of its own)."""
    t = plan.train
    _check_data(plan)
    progress = _load_progress(plan)
    if checkpoints.has_any(plan.checkpoints):
        found = None  # the run goes on from its own checkpoints
        if progress["source"] != starting.source_identity(plan):
            log.warning("train.source_checkpoint changed (or is gone) since this run started from it: the run "
                        "goes on from its own checkpoints without reading it. To start from it, add --force train.")
    else:
        found = starting.source(plan)
        progress["mode"], progress["source"] = starting.mode_record(found), starting.source_identity(plan)
        progress.save()
    configured = [t.train_batch_size, t.dev_batch_size]
    if progress["configured_batch"] != configured:  # a new setting replaces sizes halved for the old one
        progress["configured_batch"] = configured
        progress["train_batch_size"], progress["dev_batch_size"] = configured
        progress.save()
    return progress, found


def run(plan: Plan) -> Dict[str, Any]:
    """Train until finished; returns the stage's result: its counts, and the outputs later stages depend on."""
    t = plan.train
    progress, found = _prepare(plan)
    mode = progress["mode"]
    log.info("training mode: %s: %s", mode["mode"].replace("_", " "), mode["reason"])
    if finished(progress, t.epochs):
        log.info("training already finished (%d epochs%s); raise train.epochs to train more, "
                 "or add --force train to start over", progress["epochs_done"],
                 ", stopped early" if progress["stopped_early"] else "")
        if progress["train_data"] != file_digest(plan.train_set.listing):
            log.warning("the training set changed since this model was trained, and it was not retrained: "
                        "raise train.epochs to go on training on the new set, or add --force train")
    elif progress["epochs_done"]:
        log.info("resuming: %d of %d epochs were done", progress["epochs_done"], t.epochs)
    _keep_best(plan, progress)
    while not finished(progress, t.epochs):
        outcome = _train_once(plan, progress, found)
        done = progress["epochs_done"]
        if outcome.ok and finished(progress, t.epochs):
            progress.end("finished", 0)
        elif outcome.ok:
            progress.end("stopped", 0)
            raise StageError(f"DeepSpeech stopped after {done} of {t.epochs} epochs without an error (was it "
                             "interrupted?); running the same command continues from the last checkpoint")
        elif outcome.out_of_memory:
            progress.end("out_of_memory", outcome.returncode)
            _halve_batches(plan, progress)
        else:
            progress.end("crashed", outcome.returncode)
            raise StageError("DeepSpeech failed (exit code {}) after {} of {} epochs; its last lines:\n    {}\n"
                             "  The finished epochs are kept: the same command continues from the last "
                             "checkpoint.".format(outcome.returncode, done, t.epochs, "\n    ".join(outcome.tail)))
    return _result(plan, progress)


def _result(plan: Plan, progress: Progress) -> Dict[str, Any]:
    best = progress["best"] or {}
    if not checkpoints.has_best(plan.checkpoints):
        raise StageError(f"training finished but {plan.checkpoints} has no best-dev checkpoint")
    model = _model(plan, progress)
    progress["forced"] = False  # the forced training has finished: a later rerun continues nothing
    progress.set_model(model)
    log.info("the model is epoch %d's %s checkpoint %s (dev loss %s)", model["epoch"], model["which"],
             model["checkpoint"], _loss(model["dev_loss"]))
    counts = {"epochs": progress["epochs_done"], "best_epoch": best.get("epoch"),
              "best_dev_loss": best.get("dev_loss"), "model": model["checkpoint"], "mode": progress["mode"]["mode"],
              "out_of_memory_retries": sum(1 for e in progress["events"] if e["event"] == "out_of_memory")}
    # The weights by content: a retrain that changes them makes every later stage stale, a bit-identical one
    # does not.
    return {"counts": counts, "outputs": {"lineage": progress["lineage"], "epochs": progress["epochs_done"],
                                          "stopped_early": progress["stopped_early"],
                                          "model": {k: model[k] for k in ("which", "checkpoint", "digest")}},
            # For config.json, beside the settings they replaced (stages/train.py).
            "used": used(progress)}
