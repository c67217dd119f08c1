"""The one place the engine reaches up to corpora and languages: it finds them, and nothing else does.

Corpora are the modules of ``dstrain.importers``, each exporting ``CORPUS``.
Languages are the modules of ``dstrain.languages``, each exporting ``LANGUAGE``,
plus plugins registered in the entry-point group ``dstrain.languages``.  The
layering check (pyproject.toml) allows these imports here and nowhere else.

Plugins written before the import name was ``dstrain`` say ``from
pipeline.language import Language``.  While plugins load, and only when no
other ``pipeline`` can be imported, that old name is served as
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
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import dstrain.importers
import dstrain.languages
import dstrain.pipeline
from dstrain.importers.kit.contract import Corpus
from dstrain.pipeline.errors import ConfigError
from dstrain.pipeline.language import Language

log = logging.getLogger("dstrain")
ENTRY_POINT_GROUP = "dstrain.languages"
#: The import name of dstrain.pipeline before everything moved under dstrain.
OLD_NAME = "pipeline"


# -- corpora -------------------------------------------------------------------

def _corpus_of(name: str) -> Optional[Corpus]:
    qualified = dstrain.importers.__name__ + "." + name
    try:
        module = importlib.import_module(qualified)
    except ModuleNotFoundError as exc:
        if exc.name != qualified:  # the corpus exists but one of its dependencies does not
            raise
        return None
    corpus = getattr(module, "CORPUS", None)
    return corpus if isinstance(corpus, Corpus) else None


def available_importers() -> List[str]:
    return [info.name for info in pkgutil.iter_modules(dstrain.importers.__path__)
            if not info.ispkg and _corpus_of(info.name) is not None]


def get_importer(name: str) -> Corpus:
    corpus = _corpus_of(name)
    if corpus is None:
        raise ConfigError("unknown importer {!r}; available: {}".format(name, ", ".join(available_importers())))
    return corpus


# -- languages -----------------------------------------------------------------

@dataclass(frozen=True)
class LanguageEntry:
    language: Language
    origin: str  # "built-in" or the distribution that provides the plugin


def builtin_languages_dir() -> str:
    """Where a new built-in language module goes (``dstrain new-language``)."""
    return dstrain.languages.__path__[0]


def _builtin_languages() -> Dict[str, LanguageEntry]:
    found = {}
    for info in pkgutil.iter_modules(dstrain.languages.__path__):
        module = importlib.import_module(dstrain.languages.__name__ + "." + info.name)
        lang = getattr(module, "LANGUAGE", None)
        if isinstance(lang, Language):
            found[lang.code] = LanguageEntry(lang, "built-in")
    return found


def _plugin_entry_points() -> List[Tuple[str, Any]]:
    """(distribution name, entry point) for every language plugin; the same API on Python 3.8 to 3.12."""
    from importlib.metadata import distributions

    found = {}
    for dist in distributions():
        for ep in dist.entry_points:
            if ep.group == ENTRY_POINT_GROUP:
                # A distribution seen twice on sys.path (e.g. editable and installed) counts once.
                found.setdefault((dist.metadata["Name"], ep.name), ep)
    return [(name, ep) for (name, _), ep in found.items()]


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


def available_languages(dirs: Sequence = ()) -> Dict[str, LanguageEntry]:
    """Built-in languages, those in the folders ``dirs``, and plugins; two providers of one code is an error."""
    found = _builtin_languages()
    for directory in dirs:
        for code, entry in _languages_in(directory).items():
            if code in found:
                raise ConfigError(f"language {code!r} is defined twice: {found[code].origin} and {entry.origin}")
            found[code] = entry
    old_names = _OldNames.install()
    for dist_name, ep in _plugin_entry_points():
        lang = _load_plugin(dist_name, ep, old_names)
        origin = "plugin " + dist_name
        if not isinstance(lang, Language):
            raise ConfigError(f"entry point {ep.name} = {ep.value} is not a dstrain.pipeline.language.Language")
        if lang.code in found:
            raise ConfigError(f"language {lang.code!r} is defined twice: {found[lang.code].origin} and {origin}")
        found[lang.code] = LanguageEntry(lang, origin)
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

def _load_plugin(dist_name: str, ep, old_names: Optional["_OldNames"]):
    if old_names is None:
        return ep.load()
    served = old_names.watch()
    lang = ep.load()
    if served:
        message = (f"language plugin {dist_name} ({ep.value}) imports {', '.join(sorted(set(served)))}: that "
                   "name is deprecated and will stop working. Write `from dstrain.pipeline.language import "
                   "Language` (dstrain.pipeline.* for any other module) instead.")
        warnings.warn(message, DeprecationWarning, stacklevel=2)
        log.warning("%s", message)
    return lang


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
