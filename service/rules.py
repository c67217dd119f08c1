"""What the host allows a job, checked when it is submitted: ceilings on its costly settings, the addresses its
downloads may name, and the settings the host forces on every job.

A ceiling bounds a setting that decides how long a job runs or how much memory or disk it takes.  Each has a
default a host can raise or lower (``--ceiling KEY=VALUE``, or a TOML file of them, ``--limits``); a job asking
for more, by its own overrides or through its language's defaults, is refused with 422 naming the setting,
the value and the ceiling.  The container's own bounds (time, memory, CPU, processes, /tmp) hold whatever a
job's settings say; the ceilings refuse a job that could not finish within them before it takes a slot.
"""
import math
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

from dstrain.pipeline.config import Config, flatten
from dstrain.pipeline.sources.egress import Policy

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on the image's Python 3.8
    import tomli as tomllib

#: A dataset parameter every corpus has (importers/kit/params.py), bounded for each of a job's datasets.
ANY_DATASET = "dataset.*."

#: The settings that let one job take unbounded time, memory or disk, and the most a job may ask by default.
DEFAULT_CEILINGS: Dict[str, float] = {
    "train.epochs": 200,
    "train.n_hidden": 4096,
    "train.train_batch_size": 512,
    "train.dev_batch_size": 512,
    "train.test_batch_size": 512,
    "train.max_to_keep": 20,  # checkpoints kept on disk
    "workers": 16,  # audio processes (0 means one per core the job's CPU limit gives it)
    "lm.top_k": 1_000_000,  # words in the language model
    "optimize.trials": 1000,  # each decodes the whole dev set
    "evaluate.beam_width": 2048,
    "evaluate.report_count": 100,
    "export.beam_width": 2048,
    ANY_DATASET + "max_duration": 30.0,  # seconds of the longest clip: DeepSpeech's memory grows with it
    # What one reading of an archive may decompress (pipeline/sources/archive.py); every job gets this bound.
    "archives.max_expanded_bytes": 200 * 1024 ** 3,
}

#: Settings the host forces on every job, as DSTRAIN_* variables: they beat the job's settings file, which the
#: job's own user could rewrite.
ENV_BLOCK_PRIVATE = "DSTRAIN_NETWORK__BLOCK_PRIVATE"
ENV_ALLOW = "DSTRAIN_NETWORK__ALLOW"
ENV_MAX_EXPANDED = "DSTRAIN_ARCHIVES__MAX_EXPANDED_BYTES"


def read_ceilings(path: Optional[str], pairs: Tuple[str, ...]) -> Dict[str, float]:
    """The defaults, changed by a TOML file of dotted keys (``train.epochs = 500``, ``"dataset.*.max_duration" =
    60``) and then by KEY=VALUE pairs; ValueError names what is wrong."""
    ceilings = dict(DEFAULT_CEILINGS)
    given: Dict[str, Any] = {}
    if path:
        try:
            with open(path, "rb") as handle:
                given.update(flatten(tomllib.load(handle)))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"--limits {path}: {exc}") from None
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"--ceiling {pair!r}: give KEY=VALUE, e.g. train.epochs=500")
        given[key.strip()] = value.strip()
    for key, value in given.items():
        if key not in ceilings:
            raise ValueError(f"no ceiling for {key!r}; these settings have one: {', '.join(sorted(ceilings))}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"ceiling {key} = {value!r}: give a number") from None
        if not number > 0 or math.isinf(number):
            raise ValueError(f"ceiling {key} = {value!r}: give a positive number")
        ceilings[key] = number
    return ceilings


def _shown(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


@dataclass(frozen=True)
class Rules:
    ceilings: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_CEILINGS))
    #: Exceptions to the egress check the host allows (network.allow of every job).
    egress_allow: Tuple[str, ...] = ()

    #: Where jobs' downloads may connect: public addresses, and these exceptions.
    egress: Policy = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        # An exception that does not parse is refused when the service starts, not at a job's first download.
        object.__setattr__(self, "egress", Policy(True, tuple(self.egress_allow)))

    def over_ceilings(self, flat: Mapping[str, Any], config: Config) -> List[Tuple[str, str]]:
        """(key, why) for each setting of the job above its ceiling: from its own overrides, or its language's."""
        resolved = config.flat()
        values = {key: flat.get(key, resolved.get(key)) for key in self.ceilings if not key.startswith(ANY_DATASET)}
        for dataset in config.datasets:
            params = dataset.params.model_dump()
            for key in self.ceilings:
                if key.startswith(ANY_DATASET) and key[len(ANY_DATASET):] in params:
                    values[f"dataset.{dataset.key}.{key[len(ANY_DATASET):]}"] = params[key[len(ANY_DATASET):]]
        found = []
        for key, value in values.items():
            ceiling = self.ceilings.get(key, self.ceilings.get(ANY_DATASET + key.rsplit(".", 1)[-1]))
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value > ceiling:
                given = "asked for" if key in flat else "its language's default, or the default, is"
                found.append((key, f"{key} = {_shown(value)} ({given} that) is over this service's ceiling of "
                                   f"{_shown(ceiling)}; ask for at most {_shown(ceiling)}, or ask the host"))
        return found

    def refused_urls(self, flat: Mapping[str, Any]) -> List[Tuple[str, str]]:
        """(key, why) for each URL of the job whose host is, or resolves now to, an address jobs may not reach."""
        found = []
        for key, value in flat.items():
            if key.endswith(".url") and isinstance(value, str):
                why = self.egress.check_url(value)
                if why:
                    found.append((key, why))
        return found

    def environment(self, overrides: Mapping[str, Any]) -> Dict[str, str]:
        """The settings the host forces on a job's run, as variables: egress checked, archives bounded (by the
        job's own bound when it asked for a lower one)."""
        bound = int(self.ceilings["archives.max_expanded_bytes"])
        asked = overrides.get("archives.max_expanded_bytes")
        if isinstance(asked, int) and 0 < asked < bound:
            bound = asked
        return {ENV_BLOCK_PRIVATE: "true", ENV_ALLOW: ",".join(self.egress_allow), ENV_MAX_EXPANDED: str(bound)}
