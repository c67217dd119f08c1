"""Corpus importers shared by every language: one module per corpus, each exporting ``CORPUS``.

A corpus subclasses ``kit.contract.Corpus``: its parameters, where its source
lives in ``sources/``, and ``prepare``, which writes DeepSpeech CSVs,
``rejects.csv`` and ``manifest.json``.  ``kit/`` holds what they are built
from; docs/adding-a-corpus.md walks through adding one.
"""
