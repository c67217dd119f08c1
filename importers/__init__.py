"""Corpus importers shared by every language: one module per corpus.

An importer module provides:
- ``Params``: a pydantic model of its parameters (unknown keys refused);
- ``archive_path(params, sources_dir)``: where its source lives in ``sources/``;
- ``download(params, sources_dir) -> sha256``: get and verify the source;
- ``prepare(archive, sha256, out_dir, normalize, params, workers) -> manifest``:
  write DeepSpeech CSVs, ``rejects.csv`` and ``manifest.json`` into ``out_dir``.
"""
import importlib
import pkgutil

from pipeline.errors import ConfigError

VERBS = ("Params", "archive_path", "download", "prepare")


def _is_importer(module) -> bool:
    return all(hasattr(module, verb) for verb in VERBS)


def available_importers():
    names = []
    for info in pkgutil.iter_modules(__path__):
        if _is_importer(importlib.import_module(__name__ + "." + info.name)):
            names.append(info.name)
    return names


def get_importer(name: str):
    qualified = __name__ + "." + name
    try:
        module = importlib.import_module(qualified)
    except ModuleNotFoundError as exc:
        if exc.name != qualified:  # the importer exists but one of its dependencies does not
            raise
        module = None
    if module is None or not _is_importer(module):
        raise ConfigError(
            "unknown importer {!r}; available: {}".format(name, ", ".join(available_importers()))
        )
    return module
