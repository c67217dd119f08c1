"""The settings a run keeps: its ``config.json``, as later invocations of the run start from it.

The runner writes the run's resolved settings, with where each came from, into ``config.json`` whenever it
starts the run (config.py's ``Config.record``).  A setting the user gave (a config file, a ``DSTRAIN_*``
variable, a flag) is kept: the next invocation of the same run starts from it as a layer above the language's
and below anything given again, so that resuming a run needs none of its settings a second time, and a value
given anew wins and is kept in its place.  Defaults and the language's values are not kept: they follow the
installed dstrain.  Neither is where things are on this machine, nor the limits its owner sets, nor which
run this is (``NOT_KEPT``), nor a secret (config.json never holds one).

A stage that could not use a setting as it is says so beside it (``note_used``): a batch size larger than its
set is lowered to the set's size, and config.json says which size was used, and why.
"""
import logging
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from pydantic import ValidationError

from dstrain.pipeline.atomic import read_json, write_json
from dstrain.pipeline.paths import DataRoot
from dstrain.pipeline.redaction import REDACTED
from dstrain.pipeline.run_state import RunRecords
from dstrain.pipeline.settings import Settings

log = logging.getLogger("dstrain")

#: What a run never keeps: where things are on this machine (a run may go on in a container, on the host or
#: on another node, each with its own), the limits its owner sets on what a job may expand and reach (a host
#: gives them to each job; one given once must not outlive it), and which run it is (that is how its kept
#: settings are found).
NOT_KEPT = frozenset({"data_root", "run", "language_dirs", "workers", "train.trainer_python", "lm.kenlm_bin",
                      "lm.scorer_tool", "optimize.script", "export.convert_graphdef_memmapped_format",
                      "archives.max_expanded_bytes", "network.block_private", "network.allow"})
#: How the source of a kept setting begins, in config.json and `dstrain config`.
KEPT = "kept by run "
#: A layer of settings: where its values come from (one name for all, or one per key), and the values by
#: dotted key.
Layer = Tuple[Any, Dict[str, Any]]


def kept_layer(layers: List[Layer]) -> Layer:
    """The settings that the run ``layers`` name (its data root, run name and language) was given before, each
    with its source: "kept by run fr, env DSTRAIN_TRAIN__EPOCHS"; nothing before its first start."""
    given: Dict[str, Any] = {}
    for _, layer in layers:
        given.update(layer)
    try:
        named = Settings(**{key: given[key] for key in ("data_root", "run", "language") if key in given})
    except ValidationError:
        return {}, {}  # resolving the settings says what is wrong with them
    run = named.run or named.language
    sources: Dict[str, str] = {}
    values: Dict[str, Any] = {}
    for key, entry in RunRecords(DataRoot(named.data_root, run, named.language)).settings().items():
        source, value = entry["source"], entry["value"]
        origin = source.split(",", 1)[0]  # "default, capped at ..."
        if key in NOT_KEPT or origin == "default" or origin.startswith("language "):
            continue
        if _redacted(value):
            log.warning("%s: run %s kept it without its secret part (%s), which is never written down: give it "
                        "again to use it", key, run, source)
            continue
        values[key] = value
        sources[key] = source if source.startswith(KEPT) else f"{KEPT}{run}, {source}"
    return sources, values


def _redacted(value: Any) -> bool:
    items = value if isinstance(value, list) else [value]
    return any(isinstance(item, str) and REDACTED in item for item in items)


def carry_used(entries: Dict[str, Dict[str, Any]], before: Mapping[str, Any]) -> Dict[str, Dict[str, Any]]:
    """``entries`` (the settings config.json is to hold), with the value a stage used instead of a setting, and
    why, carried over from the config.json ``before`` while the setting's value is the same."""
    for key, entry in entries.items():
        old = before.get(key)
        if isinstance(old, dict) and "used" in old and old.get("value") == entry["value"]:
            entry.update(used=old["used"], why=old.get("why"))
    return entries


def note_used(path: Path, keys: Sequence[str], used: Mapping[str, Tuple[Any, str]]) -> None:
    """In a run's config.json (``path``), beside each of ``keys``, the value a stage used instead and why, as
    ``used`` gives them (a batch size lowered to its set's size); a key ``used`` leaves out was used as set."""
    entries = read_json(path) or {}
    changed = False
    for key in keys:
        entry = entries.get(key)
        if not isinstance(entry, dict):
            continue
        wanted = {name: value for name, value in entry.items() if name not in ("used", "why")}
        if key in used:
            wanted.update(used=used[key][0], why=used[key][1])
        if wanted != entry:
            entries[key], changed = wanted, True
    if changed:
        write_json(path, entries)
