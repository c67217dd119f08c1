"""Layered settings resolved into one frozen object, remembering where each value came from.

Layers, lowest first: built-in defaults, the language module, the config file
(TOML), ``DSTRAIN_*`` environment variables, command-line flags.  Nested keys
use dots in files and flags (``clean.shared_transcripts``) and a double
underscore in the environment (``DSTRAIN_CLEAN__SHARED_TRANSCRIPTS``).
"""
import dataclasses
import logging
import math
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from pydantic import ValidationError

from dstrain.pipeline.errors import ConfigError
from dstrain.pipeline.language import Language, TextSource
from dstrain.pipeline.paths import data_root_problem, printable
from dstrain.pipeline.redaction import redact
from dstrain.pipeline.registry import get_importer, get_language
from dstrain.pipeline.settings import SOURCE_FILENAME, LmSettings, Settings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on the image's Python 3.8
    import tomli as tomllib

ENV_PREFIX = "DSTRAIN_"
#: Environment variables with the prefix that are not settings (docker-compose.yml sets or reads the last four).
ENV_NOT_SETTINGS = {"DSTRAIN_CONFIG", "DSTRAIN_ARGS", "DSTRAIN_IMAGE", "DSTRAIN_RESUME_COMMAND", "DSTRAIN_DATA_ON_HOST"}
SECRET_WORDS = re.compile(r"key|token|secret|password", re.IGNORECASE)
REDACTED = "<redacted>"
#: Audio workers are processes that each decode and resample one clip at a time: past a few per core they only
#: add memory and switching, and a typo (100000000) would try to start that many.
WORKERS_PER_CORE = 4

log = logging.getLogger("dstrain")


def cores() -> int:
    """The cores this process may use: a container or taskset may allow fewer than the machine has, by the CPUs
    it may run on or by a share of their time (`docker run --cpus`, a service's CPU limit per job)."""
    quota = _cpu_quota()
    return max(1, min(_affinity(), math.ceil(quota))) if quota else _affinity()


def _affinity() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1  # pragma: no cover - not Linux


#: Where a cgroup says how much CPU time its processes get: v2's "quota period", v1's two files.
_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
_CFS = (Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us"))


def _cpu_quota() -> Optional[float]:
    """CPUs' worth of time this process's cgroup may use, or None without such a limit."""
    try:
        if _CPU_MAX.exists():
            quota, period = _CPU_MAX.read_text().split()[:2]
        else:
            quota, period = (path.read_text().strip() for path in _CFS)
        if quota in ("max", "-1") or int(period) <= 0:
            return None
        return int(quota) / int(period)
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class ResolvedDataset:
    key: str
    importer: str
    params: Any  # the corpus's validated Params model


@dataclass(frozen=True)
class Config:
    settings: Settings
    language: Language
    datasets: Tuple[ResolvedDataset, ...]
    #: Flat dotted key -> where its value came from.
    sources: Mapping[str, str]
    #: The language model's text sources: the language's, changed or added by lm.source, chosen by lm.sources.
    lm_sources: Tuple[TextSource, ...] = ()

    @property
    def run_name(self) -> str:
        return self.settings.run or self.settings.language

    @property
    def workers(self) -> int:
        return self.settings.workers or cores()

    def flat(self) -> Dict[str, Any]:
        return flatten(self.settings.model_dump(mode="json"))

    def redacted(self) -> Dict[str, Dict[str, Any]]:
        """Resolved values and their sources, safe to print and to write into the run."""
        out = {}
        for key, value in sorted(self.flat().items()):
            if SECRET_WORDS.search(key.rsplit(".", 1)[-1]) and value is not None:
                value = REDACTED
            elif isinstance(value, str):  # a url's password or token, a secret's value
                value = redact(value)
            elif isinstance(value, list):
                value = [redact(item) if isinstance(item, str) else item for item in value]
            out[key] = {"value": value, "source": self.sources.get(key, "default")}
        return out


def flatten(data: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    flat = {}
    for key, value in data.items():
        dotted = prefix + key
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


class SettingClash(ConfigError):
    """A dotted key that is both a value and a section (``train = 3`` beside ``train.epochs = 5``)."""

    def __init__(self, key: str):
        super().__init__(f"setting {key!r} is both a value and a section")
        self.key = key


def unflatten(flat: Mapping[str, Any]) -> Dict[str, Any]:
    """Dotted keys back to nested sections, as the settings schema takes them."""
    nested: Dict[str, Any] = {}
    for dotted, value in flat.items():
        node = nested
        parts = dotted.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise SettingClash(dotted)
        node[parts[-1]] = value
    return nested


#: Larger than any settings file; a larger "config file" (a device, a log given by mistake) is not read whole.
MAX_CONFIG_BYTES = 1 << 20


def read_config_file(path) -> Dict[str, Any]:
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
        if len(data) > MAX_CONFIG_BYTES:
            raise ConfigError(f"config file {path} is over {MAX_CONFIG_BYTES >> 20} MB: no settings file is that "
                              "large; is it the right file?")
        return flatten(tomllib.loads(data.decode("utf-8")))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:  # TOML is UTF-8: a file saved as Latin-1, or not a text file at all
        raise ConfigError(f"config file {path} is not valid UTF-8 (byte {exc.object[exc.start]:#04x} at byte "
                          f"{exc.start}): TOML files are UTF-8; save it as UTF-8") from None
    except RecursionError:  # arrays or tables nested thousands deep: no setting is
        raise ConfigError(f"config file {path} nests its arrays or tables too deeply to be a settings file; "
                          "no setting is nested more than a few levels deep") from None
    except ValueError as exc:  # a value the parser itself refuses: an integer of thousands of digits
        raise ConfigError(f"config file {path} holds a value that cannot be read ({_shown(str(exc).split(':')[0])})"
                          ) from None
    except OSError as exc:  # a folder, a file that cannot be read
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror or exc}") from None


def _shown(value: Any, limit: int = 200) -> str:
    """``value`` in an error message, cut short: a value of a million characters is still one paragraph."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def read_environment(environ: Mapping[str, str]) -> Dict[str, Any]:
    flat = {}
    for name, value in environ.items():
        if name.startswith(ENV_PREFIX) and name not in ENV_NOT_SETTINGS:
            flat[name[len(ENV_PREFIX):].lower().replace("__", ".")] = value
    return flat


def _language_layer(language: Language) -> Dict[str, Any]:
    flat = {"english_compatible": language.alphabet == "english"}
    flat.update(language.defaults)
    for spec in language.datasets:
        for key, value in spec.params.items():
            flat[f"dataset.{spec.key}.{key}"] = value
    return flat


def _describe_errors(exc: ValidationError, sources: Mapping[str, str], values: Mapping[str, Any]) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"])
        where = sources.get(key, "default")
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown setting {key!r} (from {where})")
        else:
            lines.append("{}: {} (got {} from {})".format(key, err["msg"], _shown(repr(values.get(key))), where))
    return "\n  ".join(lines)


def _user_layers(config_file, environ: Mapping[str, str], flags: Optional[Mapping[str, Any]]
                 ) -> List[Tuple[str, Dict[str, Any]]]:
    """The file, environment and flag layers, lowest first."""
    config_file = config_file or environ.get("DSTRAIN_CONFIG")
    layers: List[Tuple[str, Dict[str, Any]]] = []
    if config_file:
        layers.append(("file " + str(config_file), read_config_file(config_file)))
    layers.append(("env", read_environment(environ)))
    layers.append(("flag", {k: v for k, v in (flags or {}).items() if v is not None}))
    return layers


def _language_dirs(layers) -> Tuple[Path, ...]:
    dirs = ()
    for _, layer in layers:
        dirs = layer.get("language_dirs", dirs)
    try:
        return Settings(language_dirs=dirs).language_dirs
    except ValidationError:
        return ()  # resolve's check of all the settings says what is wrong with them


def language_dirs(config_file=None, environ: Optional[Mapping[str, str]] = None) -> Tuple[Path, ...]:
    """The folders of language modules that the config file and the environment name (`dstrain languages`)."""
    return _language_dirs(_user_layers(config_file, os.environ if environ is None else environ, None))


def resolve(
    config_file=None,
    environ: Optional[Mapping[str, str]] = None,
    flags: Optional[Mapping[str, Any]] = None,
) -> Config:
    """Merge the layers, validate everything, and refuse unknown keys and bad values."""
    layers = _user_layers(config_file, os.environ if environ is None else environ, flags)
    # The language is itself a setting, and it supplies the second layer; language_dirs say where else to look.
    code = Settings().language
    for _, layer in layers:
        code = layer.get("language", code)
    language = get_language(code, _language_dirs(layers))
    layers.insert(0, ("language " + language.code, _language_layer(language)))

    merged: Dict[str, Any] = {}
    sources: Dict[str, str] = {}
    for source, layer in layers:
        for key, value in layer.items():
            merged[key] = value
            sources[key] = _describe_source(source, key)
    for key, value in merged.items():
        _utf8(key, value, sources[key])
    try:
        settings = Settings(**unflatten(merged))
    except ValidationError as exc:
        raise ConfigError("invalid settings:\n  " + _describe_errors(exc, sources, merged)) from None
    problem = data_root_problem(settings.data_root)
    if problem:
        raise ConfigError(f"data_root: {problem} (from {sources.get('data_root', 'default')})")
    settings = _cap_workers(settings, sources)
    return Config(settings, language, _resolve_datasets(settings, language, sources), sources,
                  _resolve_lm_sources(settings.lm, language))


def _utf8(key: str, value: Any, source: str) -> None:
    """Refuse a name or value with bytes that are not UTF-8 (a variable or an argument in Latin-1): it could
    not be written into the run's config.json, nor shown."""
    for text in [key] + (value if isinstance(value, list) else [value]):
        if isinstance(text, str) and printable(text) != text:
            raise ConfigError(f"{printable(key)} (from {printable(source)}): '{printable(text)}' is not valid UTF-8; "
                              "give it in UTF-8")


def _cap_workers(settings: Settings, sources: Dict[str, str]) -> Settings:
    limit = WORKERS_PER_CORE * cores()
    if settings.workers <= limit:
        return settings
    log.warning("workers = %d (from %s) is more than this machine can use: at most %d per core, %d on its %d "
                "cores. Using %d.", settings.workers, sources["workers"], WORKERS_PER_CORE, limit, cores(), limit)
    sources["workers"] += f", capped at {WORKERS_PER_CORE} per core"
    return settings.model_copy(update={"workers": limit})


def _describe_source(source: str, key: str) -> str:
    if source == "env":
        return "env " + ENV_PREFIX + key.upper().replace(".", "__")
    if source == "flag":
        return "flag --" + key.replace("_", "-")
    return source


def _resolve_datasets(settings: Settings, language: Language, sources: Mapping[str, str]
                      ) -> Tuple[ResolvedDataset, ...]:
    known = [spec.key for spec in language.datasets]
    for key in settings.dataset:
        if key not in known:
            raise ConfigError(
                "dataset.{}: language {!r} has no dataset {!r} (it has: {})".format(
                    key, language.code, key, ", ".join(known)
                )
            )
    defaults = tuple(spec.key for spec in language.datasets if not spec.opt_in)
    chosen = settings.datasets if settings.datasets is not None else defaults
    added = tuple(key[1:] for key in chosen if key.startswith("+"))
    if added:  # "+mls": the default datasets and these
        if len(added) != len(chosen):
            raise ConfigError("datasets: give the whole list (a,b) or only datasets to add to the default ones (+a,+b)")
        chosen = defaults + tuple(key for key in added if key not in defaults)
    resolved = []
    for key in chosen:
        spec = language.dataset(key)
        try:
            params = get_importer(spec.importer).Params(**settings.dataset.get(key, {}))
        except ValidationError as exc:
            problems = "; ".join(
                "{}: {}".format(".".join(str(p) for p in err["loc"]), err["msg"]) for err in exc.errors()
            )
            raise ConfigError(f"dataset.{key}: {problems}") from None
        archive = getattr(params, "archive", None)
        if archive is not None and not re.match(SOURCE_FILENAME, archive):
            # A path here would make the download and the import write, and rename, files outside the data root.
            raise ConfigError(
                f"dataset.{key}.archive: {archive!r} (from {sources.get(f'dataset.{key}.archive', 'default')}) is "
                "not a file name. It names a file inside sources/, without a directory: put the file there and "
                "give its name alone, e.g. 'corpus.tar.gz'.")
        resolved.append(ResolvedDataset(key, spec.importer, params))
    if not resolved:
        raise ConfigError(f"no dataset selected for language {language.code!r}")
    return tuple(resolved)


def _resolve_lm_sources(lm: LmSettings, language: Language) -> Tuple[TextSource, ...]:
    found = {source.name: source for source in language.lm_sources}
    for name, change in lm.source.items():
        given = change.model_dump(exclude_none=True)
        if name not in found:
            filename = given.get("filename") or (given.get("url") or "").split("?")[0].rsplit("/", 1)[-1]
            if not re.match(SOURCE_FILENAME, filename):
                raise ConfigError(f"lm.source.{name}: a new text source needs a filename (or a url ending in one)")
            found[name] = TextSource(name, None, None, filename, f"unknown (set lm.source.{name}.licence)")
        found[name] = dataclasses.replace(found[name], **given)
    if lm.sources is None:
        return tuple(found.values())
    unknown = [name for name in lm.sources if name not in found]
    if unknown:
        raise ConfigError("lm.sources: no text source {!r} (there are: {})".format(
            unknown[0], ", ".join(found) or "none"))
    return tuple(found[name] for name in lm.sources)
