"""The ordered stages, their completion records, what to do when one fails, and ``start_run``.

A stage is done iff its record exists and the fingerprint in it matches what
the stage would compute now.  The fingerprint covers the stage's inputs, the
package version and the outputs digest of every upstream record, so a changed
upstream makes everything downstream stale.  The record is written last.

``start_run`` is the library's way in: settings (their data root included) in,
the run out, with each stage's log file fed only by that run, so two runs in
one process keep their logs apart.  The CLI is a thin layer over it.
"""
import contextlib
import contextvars
import logging
import shutil
import sys
import time
import traceback
from dataclasses import replace
from datetime import datetime, timezone
from typing import Dict, List, Optional, Sequence

from dstrain.pipeline import __version__, locks, processes
from dstrain.pipeline.atomic import read_json, remove_leftovers, write_json
from dstrain.pipeline.config import Config
from dstrain.pipeline.digests import digest
from dstrain.pipeline.errors import ConfigError, DstrainError
from dstrain.pipeline.redaction import RedactingFormatter, redact
from dstrain.pipeline.run_state import RunRecords
from dstrain.pipeline.sources import archive, egress
from dstrain.pipeline.stage import Context, Stage
from dstrain.pipeline.stages import STAGES
from dstrain.pipeline.stages.check import preflight, without_check_stage

log = logging.getLogger("dstrain")
#: The run whose code is executing here; a run's log files accept only its own records.
_current_run: contextvars.ContextVar = contextvars.ContextVar("dstrain_run", default=None)


def fingerprint(stage: Stage, ctx: Context) -> str:
    upstream = {}
    for name in stage.after:
        record = ctx.record(name)
        upstream[name] = record["outputs"] if record else None
    return digest({"inputs": stage.inputs(ctx), "version": __version__, "upstream": upstream})


def stage_states(stages: Sequence[Stage], ctx: Context) -> Dict[str, str]:
    """'done', 'stale' or 'pending' for every stage, in order: its record against what it would compute now."""
    return RunRecords(ctx.paths).states(stages, lambda stage: fingerprint(stage, ctx))


def select(
    stages: Sequence[Stage],
    start: Optional[str] = None,
    stop: Optional[str] = None,
    only: Optional[str] = None,
) -> List[Stage]:
    names = [s.name for s in stages]
    for flag, value in (("--from", start), ("--to", stop), ("--only", only)):
        if value is not None and value not in names:
            raise ConfigError("{} {}: no such stage; stages are: {}".format(flag, value, ", ".join(names)))
    if only is not None:
        if start is not None or stop is not None:
            raise ConfigError("--only cannot be combined with --from or --to")
        start = stop = only
    first = names.index(start) if start else 0
    last = names.index(stop) if stop else len(names) - 1
    if first > last:
        raise ConfigError(f"--from {start} comes after --to {stop}")
    return list(stages[first : last + 1])


def run_stages(
    stages: Sequence[Stage],
    ctx: Context,
    selected: Sequence[Stage],
    force: Sequence[str] = (),
    resume_command: str = "dstrain run",
) -> None:
    """Run the selected stages in order, skipping those already done."""
    names = [s.name for s in stages]
    chosen = {s.name for s in selected}
    for name in force:
        if name not in names:
            raise ConfigError(f"--force {name}: no such stage; stages are: {', '.join(names)}")
        if name not in chosen:
            raise ConfigError(f"--force {name}: that stage is not among those selected by --from/--to/--only")
    ctx = replace(ctx, forced=frozenset(force), selected=ctx.selected or frozenset(s.name for s in selected))
    states = stage_states(stages, ctx)
    for stage in selected:
        for up in stage.after:
            if up not in chosen and states[up] != "done":
                raise ConfigError(
                    f"stage {stage.name} needs {up}, which is {states[up]}; "
                    f"run `{resume_command}` without --from/--only first"
                )
    for stage in selected:
        record = ctx.record(stage.name)
        done = record is not None and record.get("fingerprint") == fingerprint(stage, ctx)
        if done and not stage.always and stage.name not in force:
            log.info("✓ %-9s up to date (finished %s)", stage.name, record.get("finished", "?"))
            continue
        _run_one(stage, ctx, resume_command)


def _run_one(stage: Stage, ctx: Context, resume_command: str) -> None:
    log_path = ctx.paths.log(stage.name)
    started = time.time()
    with _stage_log(log_path) as stage_log:
        log.info("▶ %-9s %s", stage.name, stage.help)
        try:
            result = stage.run(ctx) or {}
        except (KeyboardInterrupt, Exception) as exc:
            if not isinstance(exc, (DstrainError, KeyboardInterrupt)):
                log.debug("%s", traceback.format_exc())
            cause = "interrupted" if isinstance(exc, KeyboardInterrupt) else str(exc) or type(exc).__name__
            # Last in the stage log, so a person reading it finds why it stopped; to that file alone, as the
            # console gets the whole story from StageFailed.
            stage_log.handle(log.makeRecord(log.name, logging.ERROR, __file__, 0, "✗ %-9s failed: %s",
                                            (stage.name, cause), None))
            _record_failure(ctx, stage.name, cause, resume_command)
            raise StageFailed(stage.name, cause, str(log_path), resume_command) from exc
    finished = time.time()
    write_json(
        ctx.paths.record(stage.name),
        {
            "stage": stage.name,
            # Taken after the work: a download's inputs include the archive it just verified.
            "fingerprint": fingerprint(stage, ctx),
            "outputs": digest(result.get("outputs", stage.name)),
            "counts": result.get("counts", {}),
            "started": _iso(started),
            "finished": _iso(finished),
            "seconds": round(finished - started, 3),
            "dstrain_version": __version__,
        },
    )
    ctx.paths.failure(stage.name).unlink(missing_ok=True)
    log.info("✓ %-9s done in %.1fs", stage.name, finished - started)


def _record_failure(ctx: Context, stage: str, cause: str, resume_command: str) -> None:
    """Why the stage stopped, for whoever asks later (`dstrain status`, the service): run_state.py reads it."""
    now = time.time()
    try:
        write_json(ctx.paths.failure(stage), {"stage": stage, "cause": redact(cause), "resume": redact(resume_command),
                                              "failed": _iso(now), "time": now, "dstrain_version": __version__})
    except OSError as exc:  # a full or read-only disk: the failure itself is what the user must hear about
        log.debug("the failure of stage %s could not be recorded: %s", stage, exc)


class _StageLog(logging.FileHandler):
    """A stage's log file that, when the disk under it is full (or gone), loses the lines instead of printing
    logging's own traceback for each: the run says what happened itself (advice.py), and those tracebacks
    would bury it."""

    def handleError(self, record: logging.LogRecord) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handleError(record)

    def close(self) -> None:
        try:
            super().close()
        except OSError:  # the lines still buffered: raised here, it would replace the error the stage raised
            pass


@contextlib.contextmanager
def _stage_log(path):
    """Everything the current run logs while the stage runs goes to the stage's file, and nothing of another run."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = _StageLog(str(path), encoding="utf-8")
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(message)s"))
    run = _current_run.get()
    handler.addFilter(lambda record: _current_run.get() is run)
    log.addHandler(handler)
    try:
        yield handler
    finally:
        log.removeHandler(handler)
        handler.close()


def start_run(config: Config, start: Optional[str] = None, stop: Optional[str] = None, only: Optional[str] = None,
              force: Sequence[str] = (), resume_command: str = "dstrain run", wait: bool = True) -> Context:
    """Run the stages these settings select, under their data root: what ``dstrain run`` does, as a library call.

    Bad settings are refused before any work (the language's own test cases, a writable data root); the
    resolved settings are written to the run's ``config.json``; finished stages are skipped.  Raises
    ``StageFailed`` naming the stage, the cause and ``resume_command``.

    One run at a time holds the run directory, and one writer at a time each shared output it writes
    (pipeline/locks.py): a second run of the same directory waits its turn, or with ``wait=False`` stops
    at once with ``locks.Busy`` naming the holder.
    """
    selected = select(STAGES, start, stop, only)
    ctx = replace(Context.of(config), selected=frozenset(s.name for s in selected))
    # The stage logs keep everything, debug lines too; other handlers choose what they show by their level.
    log.setLevel(logging.DEBUG)
    token = _current_run.set(object())
    try:
        preflight(ctx)
        with locks.waiting(wait), locks.hold(ctx.paths.run, f"run {config.run_name} ({ctx.paths.run})"), \
                _walls(config):
            _under_lock(ctx, config, selected, force, resume_command)
    finally:
        _current_run.reset(token)
    return ctx


def _walls(config: Config):
    """What the run may reach and unpack: its network policy and the bound on an archive's expansion."""
    walls = contextlib.ExitStack()
    walls.enter_context(egress.enforced(egress.Policy.of(config.settings.network)))
    walls.enter_context(archive.bounded(config.settings.archives.max_expanded_bytes))
    return walls


def _under_lock(ctx: Context, config: Config, selected, force, resume_command: str) -> None:
    # Whatever a killed run was writing: no one else writes here while the lock is held.
    remove_leftovers(ctx.paths.run, recursive=True)
    if read_json(ctx.paths.config_file) != config.redacted():
        write_json(ctx.paths.config_file, config.redacted())
    log.info("run %s: language %s, data root %s", config.run_name, config.language.code, ctx.paths.root)
    # What the programs of a killed run left in their TMPDIR: no one else uses it while the lock is held.
    shutil.rmtree(str(ctx.paths.temporary), ignore_errors=True)
    with processes.temporary_files_in(ctx.paths.temporary):
        # Under the lock: the smoke training writes in the run directory.
        without_check_stage(ctx)
        run_stages(STAGES, ctx, selected, force, resume_command)


def check_run(config: Config, smoke: bool = False, stop: Optional[str] = None,
              resume_command: str = "dstrain check") -> Context:
    """``dstrain check``: the check stage alone, verifying what a run up to ``stop`` (by default a whole run)
    needs, the trainer and its tools included; with ``smoke``, the smoke training too."""
    ctx = replace(Context.of(config), selected=frozenset(s.name for s in select(STAGES, stop=stop)), smoke=smoke)
    log.setLevel(logging.DEBUG)
    token = _current_run.set(object())
    try:
        with contextlib.ExitStack() as held:
            if smoke:
                # The smoke training writes in the run directory; a run holding it is not waited for.
                held.enter_context(locks.waiting(False))
                held.enter_context(locks.hold(ctx.paths.run, f"run {config.run_name} ({ctx.paths.run})"))
                held.enter_context(processes.temporary_files_in(ctx.paths.temporary))
            run_stages(STAGES, ctx, select(STAGES, only="check"), (), resume_command)
    finally:
        _current_run.reset(token)
    return ctx


class StageFailed(DstrainError):
    def __init__(self, stage: str, cause: str, log_path: str, resume_command: str):
        self.stage = stage
        super().__init__(
            f"stage {stage} failed: {cause}\n  log: {log_path}\n  Everything finished before it is kept. "
            f"Fix the cause, then resume with:\n    {resume_command}"
        )


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
