"""The ordered stages, their completion records, and what to do when one fails.

A stage is done iff its record exists and the fingerprint in it matches what
the stage would compute now.  The fingerprint covers the stage's inputs, the
package version and the outputs digest of every upstream record, so a changed
upstream makes everything downstream stale.  The record is written last.
"""
import hashlib
import json
import logging
import time
import traceback
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Callable, Dict, FrozenSet, List, Optional, Sequence, Tuple

from pipeline import __version__
from pipeline.atomic import read_json, write_json
from pipeline.config import Config
from pipeline.errors import ConfigError, DstrainError
from pipeline.paths import DataRoot

log = logging.getLogger("dstrain")


@dataclass(frozen=True)
class Context:
    config: Config
    paths: DataRoot
    #: Stages named by --force; train must then discard its checkpoints.
    forced: FrozenSet[str] = frozenset()

    @property
    def language(self):
        return self.config.language

    def record(self, stage: str) -> Optional[Dict[str, Any]]:
        return read_json(self.paths.record(stage))

    def step_done(self, stage: str, record: Optional[Dict[str, Any]], fingerprint: str) -> bool:
        """Whether a part of ``stage`` with its own record (a dataset, an LM step) is done: --force redoes it."""
        return record is not None and record.get("fingerprint") == fingerprint and stage not in self.forced


@dataclass(frozen=True)
class Stage:
    name: str
    help: str
    after: Tuple[str, ...]
    #: The values the stage reads; any change makes it stale.
    inputs: Callable[[Context], Dict[str, Any]]
    #: Does the work; returns {"counts": {...}, "outputs": digest-able data}.
    run: Callable[[Context], Dict[str, Any]]
    #: Cheap checks that run every time the stage is selected.
    always: bool = False


def digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def fingerprint(stage: Stage, ctx: Context) -> str:
    upstream = {}
    for name in stage.after:
        record = ctx.record(name)
        upstream[name] = record["outputs"] if record else None
    return digest({"inputs": stage.inputs(ctx), "version": __version__, "upstream": upstream})


def stage_states(stages: Sequence[Stage], ctx: Context) -> Dict[str, str]:
    """'done', 'stale' or 'pending' for every stage, in order."""
    states: Dict[str, str] = {}
    for stage in stages:
        record = ctx.record(stage.name)
        if record is None:
            states[stage.name] = "pending"
        elif any(states[up] != "done" for up in stage.after) or record.get("fingerprint") != fingerprint(
            stage, ctx
        ):
            states[stage.name] = "stale"
        else:
            states[stage.name] = "done"
    return states


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
    ctx = replace(ctx, forced=frozenset(force))
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
    log_path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(str(log_path), encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    started = time.time()
    log.info("▶ %-9s %s", stage.name, stage.help)
    try:
        result = stage.run(ctx) or {}
    except (KeyboardInterrupt, Exception) as exc:
        if not isinstance(exc, (DstrainError, KeyboardInterrupt)):
            log.debug("%s", traceback.format_exc())
        cause = "interrupted" if isinstance(exc, KeyboardInterrupt) else str(exc) or type(exc).__name__
        raise StageFailed(stage.name, cause, str(log_path), resume_command) from exc
    finally:
        log.removeHandler(handler)
        handler.close()
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
    log.info("✓ %-9s done in %.1fs", stage.name, finished - started)


class StageFailed(DstrainError):
    def __init__(self, stage: str, cause: str, log_path: str, resume_command: str):
        self.stage = stage
        super().__init__(
            f"stage {stage} failed: {cause}\n  log: {log_path}\n  Everything finished before it is kept. "
            f"Fix the cause, then resume with:\n    {resume_command}"
        )


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
