"""Finds corpora and languages: dstrain's own and everyone else's, the same way, through entry points.

dstrain declares its own in ``pyproject.toml`` as any plugin would: the entry-point group
``dstrain.corpora`` names the package ``dstrain.importers``, and ``dstrain.languages`` names
``dstrain.languages``.  So this module imports neither, and the pipeline stays below them.  An entry point
names one ``Language`` (one ``Corpus``), or a package whose modules each export ``LANGUAGE`` (``CORPUS``):
a module added to such a package is found without a new entry point, or a reinstall.  Languages also come
from the folders ``language_dirs`` names, loaded by path.  Two providers of one name is an error.

Plugins written before the import name was ``dstrain`` say ``from pipeline.language import Language``.
While plugins load, and only when no other ``pipeline`` can be imported, that old name is served as
``dstrain.pipeline``, with a warning naming the plugin and the new import.
"""
import importlib
import importlib.abc
import importlib.util
import logging
import os
import pkgutil
import sys
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any, Dict, List, Optional, Protocol, Sequence, Tuple, runtime_checkable

import dstrain.pipeline
from dstrain.pipeline.errors import ConfigError
from dstrain.pipeline.language import Language

log = logging.getLogger("dstrain")
LANGUAGES = "dstrain.languages"
CORPORA = "dstrain.corpora"
#: The distribution whose entry points are the built-ins.
OWN = "dstrain"
#: The import name of dstrain.pipeline before everything moved under dstrain.
OLD_NAME = "pipeline"


@runtime_checkable
class Corpus(Protocol):
    """What the pipeline calls on a corpus: the contract, ``importers/kit/contract.py``, says what each means."""

    Params: Any
    version: int

    @property
    def name(self) -> str: ...

    def archive_path(self, params, sources: Path) -> Path: ...

    def download(self, params, sources: Path) -> str: ...

    def prepare(self, archive: Path, sha256: str, out_dir: Path, normalize, params, workers: int) -> dict: ...


# -- entry points ----------------------------------------------------------------

def _entry_points(group: str) -> List[Tuple[str, Any]]:
    """(distribution name, entry point) for each entry of ``group``, dstrain's own first."""
    # Read once per search path: a run asks for its corpora many times, and a test may add a folder of plugins.
    return _entry_points_on(group, tuple(sys.path))


@lru_cache(maxsize=None)
def _entry_points_on(group: str, path: Tuple[str, ...]) -> List[Tuple[str, Any]]:
    """The same API on Python 3.8 to 3.12."""
    from importlib.metadata import distributions

    found = {}
    for dist in distributions():
        for ep in dist.entry_points:
            if ep.group == group:
                # A distribution seen twice on sys.path (e.g. editable and installed) counts once.
                found.setdefault((dist.metadata["Name"], ep.name), ep)
    if not any(name == OWN for name, _ in found):
        raise ConfigError(f"dstrain's own entry points ({group}) are missing: the installed package is older than "
                          "this code. Install it again: `pip install -e .` in a checkout (docs/architecture.md).")
    return sorted(((name, ep) for (name, _), ep in found.items()), key=lambda item: item[0] != OWN)


def _origin(dist_name: str) -> str:
    return "built-in" if dist_name == OWN else "plugin " + dist_name


def _is_package(target) -> bool:
    return isinstance(target, ModuleType) and hasattr(target, "__path__")


def _member(package: ModuleType, name: str) -> Optional[ModuleType]:
    """The module ``name`` of ``package``, or None when it has none (a missing dependency of one is an error)."""
    qualified = package.__name__ + "." + name
    try:
        return importlib.import_module(qualified)
    except ModuleNotFoundError as exc:
        if exc.name != qualified:  # the module exists but one of its dependencies does not
            raise
        return None


def _members(package: ModuleType) -> List[ModuleType]:
    return [_member(package, info.name) for info in pkgutil.iter_modules(package.__path__) if not info.ispkg]


# -- corpora -------------------------------------------------------------------

def _corpora(only: Optional[str] = None) -> Dict[str, Tuple[Corpus, str]]:
    """name -> (corpus, origin), for every corpus, or for the one named ``only`` (importing no other)."""
    found: Dict[str, Tuple[Corpus, str]] = {}
    for dist_name, ep in _entry_points(CORPORA):
        target = ep.load()
        if _is_package(target):
            modules = [_member(target, only)] if only else _members(target)
            corpora = [getattr(module, "CORPUS", None) for module in modules if module is not None]
        else:
            if not isinstance(target, Corpus):
                raise ConfigError(f"entry point {ep.name} = {ep.value} ({_origin(dist_name)}) is not a corpus")
            corpora = [target]
        for corpus in corpora:
            if not isinstance(corpus, Corpus) or (only and corpus.name != only):
                continue
            if corpus.name in found:
                raise ConfigError(f"corpus {corpus.name!r} is defined twice: {found[corpus.name][1]} and "
                                  f"{_origin(dist_name)}")
            found[corpus.name] = (corpus, _origin(dist_name))
    return found


def available_importers() -> List[str]:
    return sorted(_corpora())


def get_importer(name: str) -> Corpus:
    found = _corpora(only=name)
    if name not in found:
        raise ConfigError("unknown importer {!r}; available: {}".format(name, ", ".join(available_importers())))
    return found[name][0]


# -- languages -----------------------------------------------------------------

@dataclass(frozen=True)
class LanguageEntry:
    language: Language
    origin: str  # "built-in", "file <path>", or "plugin <distribution>"


def builtin_languages_dir() -> str:
    """Where a new built-in language module goes (``dstrain new-language``): the folder of the package dstrain's
    own entry point names."""
    for dist_name, ep in _entry_points(LANGUAGES):
        if dist_name == OWN:
            target = ep.load()
            if _is_package(target):
                return target.__path__[0]
    raise ConfigError(f"dstrain's own {LANGUAGES} entry point names no package of languages")


def _languages_of(ep) -> List[Language]:
    target = ep.load()
    if _is_package(target):
        return [module.LANGUAGE for module in _members(target)
                if module is not None and isinstance(getattr(module, "LANGUAGE", None), Language)]
    if not isinstance(target, Language):
        raise ConfigError(f"entry point {ep.name} = {ep.value} is not a dstrain.pipeline.language.Language")
    return [target]


def _languages_in(directory) -> Dict[str, LanguageEntry]:
    """The language modules of a folder named by ``language_dirs``: each ``<code>.py`` that defines LANGUAGE,
    as ``dstrain new-language --dir`` writes them."""
    found = {}
    for path in sorted(Path(directory).glob("*.py")):
        spec = importlib.util.spec_from_file_location(f"dstrain_language_dir.{path.stem}", str(path))
        module = importlib.util.module_from_spec(spec)
        try:
            # Compiled here, not by the import system, which would write a __pycache__ into the folder: dstrain
            # reads a folder of languages (perhaps the system's), it never writes there.
            exec(compile(path.read_bytes(), str(path), "exec"), module.__dict__)
        except Exception as exc:  # the user's own file: say which, and why, without a traceback
            raise ConfigError(f"language module {path} does not load: {type(exc).__name__}: {exc}") from None
        lang = getattr(module, "LANGUAGE", None)
        if isinstance(lang, Language):
            found[lang.code] = LanguageEntry(lang, f"file {path}")
    return found


def _add(found: Dict[str, LanguageEntry], entry: LanguageEntry) -> None:
    code = entry.language.code
    if code in found:
        raise ConfigError(f"language {code!r} is defined twice: {found[code].origin} and {entry.origin}")
    found[code] = entry


def available_languages(dirs: Sequence = ()) -> Dict[str, LanguageEntry]:
    """Built-in languages, those in the folders ``dirs``, and plugins; two providers of one code is an error."""
    found: Dict[str, LanguageEntry] = {}
    entries = _entry_points(LANGUAGES)
    for dist_name, ep in entries:
        if dist_name == OWN:
            for lang in _languages_of(ep):
                _add(found, LanguageEntry(lang, "built-in"))
    for directory in dirs:
        for entry in _languages_in(directory).values():
            _add(found, entry)
    old_names = _OldNames.install()
    for dist_name, ep in entries:
        if dist_name != OWN:
            for lang in _load_plugin(dist_name, ep, old_names):
                _add(found, LanguageEntry(lang, _origin(dist_name)))
    return found


def get_language(code: str, dirs: Sequence = ()) -> Language:
    found = available_languages(dirs)
    if code not in found:
        raise ConfigError(
            "unknown language {!r}; available: {}. To add one: see docs/adding-a-language.md".format(
                code, ", ".join(sorted(found)) or "none"
            )
        )
    return found[code].language


# -- the deprecated import name ------------------------------------------------------

def _load_plugin(dist_name: str, ep, old_names: Optional["_OldNames"]) -> List[Language]:
    """The languages of a plugin's entry point, telling its author when it imports the old name."""
    if old_names is None:
        return _languages_of(ep)
    served = old_names.watch()
    found = _languages_of(ep)
    if served:
        message = (f"language plugin {dist_name} ({ep.value}) imports {', '.join(sorted(set(served)))}: that "
                   "name is deprecated and will stop working. Write `from dstrain.pipeline.language import "
                   "Language` (dstrain.pipeline.* for any other module) instead.")
        warnings.warn(message, DeprecationWarning, stacklevel=2)
        log.warning("%s", message)
    return found


class _OldNames(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves ``pipeline`` and ``pipeline.*`` as the ``dstrain.pipeline`` modules themselves, noting each name."""

    _installed: Optional["_OldNames"] = None

    def __init__(self):
        self.served: List[str] = []

    @classmethod
    def install(cls) -> Optional["_OldNames"]:
        """The finder, first on sys.meta_path; None when another ``pipeline`` is importable (it wins)."""
        if cls._installed is None:
            if _another_pipeline():
                return None
            cls._installed = cls()
            sys.meta_path.insert(0, cls._installed)
        return cls._installed

    def watch(self) -> List[str]:
        """Forget the names served so far, so that the next import of one is noticed; returns the new list."""
        for name in [n for n in sys.modules if n == OLD_NAME or n.startswith(OLD_NAME + ".")]:
            del sys.modules[name]
        self.served = []
        return self.served

    def find_spec(self, name, path=None, target=None):
        if name == OLD_NAME or name.startswith(OLD_NAME + "."):
            return importlib.util.spec_from_loader(name, self)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        # The import statement binds what sys.modules holds once this returns: the real module, not this one.
        sys.modules[module.__name__] = importlib.import_module("dstrain." + module.__name__)
        self.served.append(module.__name__)


def _another_pipeline() -> bool:
    """Whether ``import pipeline`` finds a package other than this checkout's own folder."""
    try:
        spec = importlib.util.find_spec(OLD_NAME)
    except ValueError:
        return True
    if spec is None:
        return False
    return spec.origin is None or os.path.realpath(spec.origin) != os.path.realpath(dstrain.pipeline.__file__)
