"""The stage contract: what a stage declares (``Stage``) and what it is given (``Context``).

Stages import this module, never the runner nor each other; their fingerprints are made with digests.py.
"""
from dataclasses import dataclass
from typing import Any, Callable, Dict, FrozenSet, Optional, Tuple

from dstrain.pipeline.config import Config
from dstrain.pipeline.paths import DataRoot
from dstrain.pipeline.run_state import RunRecords


@dataclass(frozen=True)
class Context:
    config: Config
    paths: DataRoot
    #: Stages named by --force; train must then discard its checkpoints.
    forced: FrozenSet[str] = frozenset()
    #: The stages this invocation runs (every stage for `dstrain check`): check verifies what they need.
    selected: FrozenSet[str] = frozenset()
    #: The smoke training: None before a run's first training (train.smoke), True now, False not at all.
    smoke: Optional[bool] = None

    @classmethod
    def of(cls, config: Config) -> "Context":
        """The context of the run these settings describe, under their data root."""
        settings = config.settings
        return cls(config, DataRoot(settings.data_root, config.run_name, config.language.code, settings.clips.format))

    @property
    def language(self):
        return self.config.language

    def record(self, stage: str) -> Optional[Dict[str, Any]]:
        return RunRecords(self.paths).record(stage)

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
