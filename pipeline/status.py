"""What ``dstrain status`` shows: each stage's state, times and counts, and a training under way or stopped.

A training that has not finished has no record yet (the record is written last), but its progress is
known epoch by epoch (deepspeech/progress.py): it shows as ``running`` while its dstrain process is alive
on this machine, else ``interrupted``, with the epochs done and the best so far.
"""
from typing import List, NamedTuple, Optional

from dstrain.pipeline.deepspeech.progress import Progress
from dstrain.pipeline.runner import stage_states
from dstrain.pipeline.stage import Context
from dstrain.pipeline.stages import STAGES


class Row(NamedTuple):
    stage: str
    state: str
    finished: str
    seconds: str
    counts: str


def training_state(ctx: Context, recorded: str) -> Optional[str]:
    """"running" or "interrupted" for a training under way or stopped; None when ``recorded`` tells it all."""
    progress = Progress.load(ctx.paths.training_progress, ctx.paths.metrics)
    if progress is None:
        return None
    if progress.running_elsewhere():
        return "running"
    finished = progress["stopped_early"] or progress["epochs_done"] >= ctx.config.settings.train.epochs
    if recorded != "done" and (progress.unfinished() is not None or (progress["invocations"] and not finished)):
        return "interrupted"
    return None


def training_counts(ctx: Context) -> str:
    progress = Progress.load(ctx.paths.training_progress, ctx.paths.metrics)
    best = progress["best"]
    text = f"epochs={progress['epochs_done']}/{ctx.config.settings.train.epochs}"
    if best is not None:
        loss = "-" if best["dev_loss"] is None else f"{best['dev_loss']:.2f}"
        text += f", best epoch {best['epoch']} (dev loss {loss})"
    return text


def rows(ctx: Context) -> List[Row]:
    states = stage_states(STAGES, ctx)
    found = []
    for stage in STAGES:
        record = ctx.record(stage.name) or {}
        state = states[stage.name]
        counts = ", ".join(f"{k}={v}" for k, v in record.get("counts", {}).items())
        if stage.name == "train":
            under_way = training_state(ctx, state)
            if under_way is not None:
                state, counts = under_way, training_counts(ctx)
        found.append(Row(stage.name, state, str(record.get("finished", "-")), str(record.get("seconds", "-")),
                         counts))
    return found


def advice(found: List[Row], resume_command: str) -> List[str]:
    """What to do about a training that stopped."""
    train = next(row for row in found if row.stage == "train")
    if train.state == "interrupted":
        return [f"training was interrupted ({train.counts}); to continue it from its last checkpoint, run:",
                f"    {resume_command}"]
    if train.state == "running":
        return [f"training is running ({train.counts})"]
    return []
