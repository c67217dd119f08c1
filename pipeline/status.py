"""What ``dstrain status`` shows: each stage's state, times and counts, a training under way or stopped, and the
last error.

Everything comes from the run's records, through run_state.py: a training that has not finished has no
record yet (the record is written last), but its account is kept epoch by epoch (deepspeech/progress.py): it
shows as ``running`` while its dstrain process is alive on this machine, else ``interrupted``, with the epochs
done, of those the run was started with, and the best so far.  A stage that failed left why
(``state/<stage>.failed.json``).  Whether a stage is done or stale still compares its record with the
settings ``status`` is given.
"""
from typing import List, NamedTuple, Optional

from dstrain.pipeline.run_state import Failure, RunRecords
from dstrain.pipeline.runner import stage_states
from dstrain.pipeline.stage import Context
from dstrain.pipeline.stages import STAGE_NAMES, STAGES


class Row(NamedTuple):
    stage: str
    state: str
    finished: str
    seconds: str
    counts: str


class Status(NamedTuple):
    rows: List[Row]
    #: The latest failure of a stage that has not finished since.
    last_error: Optional[Failure]


def rows(ctx: Context) -> Status:
    records = RunRecords(ctx.paths)
    states = stage_states(STAGES, ctx)
    # Whether a training was interrupted is a fact of the run: counted against the epochs it was started with
    # (its config.json), not those the settings given to `status` would ask for.
    epochs = records.setting("train.epochs")
    epochs = epochs if type(epochs) is int else ctx.config.settings.train.epochs
    training = records.training()
    found = []
    for stage in STAGES:
        record = records.record(stage.name) or {}
        state = states[stage.name]
        counts = ", ".join(f"{k}={v}" for k, v in record.get("counts", {}).items())
        if stage.name == "train" and training is not None:
            under_way = training.state(state, epochs)
            if under_way is not None:
                state, counts = under_way, training.describe(epochs)
        found.append(Row(stage.name, state, str(record.get("finished", "-")), str(record.get("seconds", "-")),
                         counts))
    return Status(found, records.last_error(STAGE_NAMES))


def advice(status: Status, resume_command: str) -> List[str]:
    """What to do about a training that stopped, or a stage that failed."""
    train = next(row for row in status.rows if row.stage == "train")
    lines = []
    if train.state == "interrupted":
        lines += [f"training was interrupted ({train.counts}); to continue it from its last checkpoint, run:",
                  f"    {resume_command}"]
    elif train.state == "running":
        lines += [f"training is running ({train.counts})"]
    failure = status.last_error
    # An interrupted training is told above; any other failure, a crashed training's too, says its cause.
    if failure is not None and not (failure.interrupted and failure.stage == "train" and train.state != "done"):
        lines += [f"last error, {failure.failed}: {failure.describe()}",
                  "  Everything finished before it is kept. Fix the cause, then resume with:",
                  f"    {failure.resume or resume_command}"]
    return lines
