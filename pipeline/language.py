"""The language contract: a language is data plus one normalisation function.

A module under ``languages/`` (or a plugin registered in the entry-point group
``dstrain.languages``) does ``from dstrain.pipeline.language import Language``
and exports ``LANGUAGE = Language(...)``.  The engine never branches on a
language code; everything it needs is in this object.  pipeline/registry.py
finds them.
"""
import hashlib
import inspect
from dataclasses import dataclass, field, replace
from typing import Any, Callable, List, Mapping, Optional, Tuple

from anyascii import anyascii

from dstrain.pipeline.errors import ConfigError

#: The alphabet of DeepSpeech's released English model, for transfer learning.
ENGLISH_LETTERS = "abcdefghijklmnopqrstuvwxyz'"


def to_english(transcript: str) -> str:
    """A normalised transcript in ENGLISH_LETTERS' terms (``english_compatible``): ASCII, lower case."""
    return " ".join(anyascii(transcript).lower().split())


@dataclass(frozen=True)
class DatasetSpec:
    """One corpus a language trains on: an importer plus its parameters."""

    importer: str
    params: Mapping[str, Any] = field(default_factory=dict)
    #: Defaults to the importer name; set it to use one importer twice.
    name: str = ""
    #: Left out unless the user asks for it (``--datasets +KEY``): a download too large to make without consent.
    opt_in: bool = False

    @property
    def key(self) -> str:
        return self.name or self.importer


@dataclass(frozen=True)
class TextSource:
    """Sentences for the language model: one text file, one sentence per line (.txt, .gz, .bz2 or .xz)."""

    name: str
    #: None: the file is placed by hand in ``sources/``.
    url: Optional[str]
    #: Checked before use; None records the first sha256 seen and warns.
    sha256: Optional[str]
    #: Its name in ``sources/``.
    filename: str
    licence: str


@dataclass(frozen=True)
class ModelMetadata:
    """What DeepSpeech's export writes into a model and its metadata file (the --export_* flags).

    An empty model_name, language or description is filled from the language, see Language.model_metadata.
    """

    author: str = "dstrain"
    model_name: str = ""
    model_version: str = "0.1.0"
    contact_info: str = "not given"
    #: An SPDX identifier.
    license: str = "MPL-2.0"
    #: A BCP 47 tag such as fr-FR.
    language: str = ""
    min_ds_version: str = "0.9.0"
    max_ds_version: str = "0.9.3"
    description: str = ""


@dataclass(frozen=True)
class Language:
    code: str
    name: str
    locale: str
    #: Returns the label ready for training, or None to reject it.
    normalize: Callable[[str], Optional[str]]
    #: (raw label, expected result or None for "rejected"); run before heavy work.
    cases: Tuple[Tuple[str, Optional[str]], ...]
    #: Every character a clean transcript may hold, besides the space.
    letters: str
    datasets: Tuple[DatasetSpec, ...] = ()
    #: "data": the alphabet is the characters seen in the cleaned transcripts.
    #: "english": DeepSpeech's English alphabet (transcripts transliterated).
    alphabet: str = "data"
    #: Text for the language model, besides the training transcripts.
    lm_sources: Tuple[TextSource, ...] = ()
    metadata: ModelMetadata = ModelMetadata()
    #: Settings that differ from the global defaults for this language, as dotted keys
    #: ({"train.dropout_rate": 0.25}); a config file, the environment and flags still override them.
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def model_metadata(self) -> ModelMetadata:
        """The metadata with its blanks filled from the language itself."""
        meta = self.metadata
        return replace(
            meta,
            model_name=meta.model_name or f"deepspeech-{self.code}",
            language=meta.language or self.locale,
            description=meta.description or f"A DeepSpeech 0.9.3 model for {self.name}, trained with dstrain.",
        )

    def failing_cases(self) -> List[str]:
        """Describe each inline test case whose result differs from the expected one."""
        failures = []
        for raw, expected in self.cases:
            try:
                got = self.normalize(raw)
            except Exception as exc:  # a crash in a rule is a failed case, not a traceback
                got = f"<raised {type(exc).__name__}: {exc}>"
            if got != expected:
                failures.append(f"normalize({raw!r}) gave {got!r}, expected {expected!r}")
        return failures

    def normalizer_fingerprint(self) -> str:
        """Changes when the normalisation rules change, so imports are redone.

        Uses the rule's source and its results on the inline cases; a change
        elsewhere in the module (metadata, another dataset) leaves it alone.
        """
        digest = hashlib.sha256()
        try:
            digest.update(inspect.getsource(self.normalize).encode())
        except (OSError, TypeError):
            digest.update(repr(self.normalize).encode())
        for raw, _ in self.cases:
            digest.update(repr((raw, self.normalize(raw))).encode())
        return digest.hexdigest()[:16]

    def dataset(self, key: str) -> DatasetSpec:
        for spec in self.datasets:
            if spec.key == key:
                return spec
        raise ConfigError(
            "language {!r} has no dataset {!r}; it has: {}".format(
                self.code, key, ", ".join(s.key for s in self.datasets) or "none"
            )
        )
