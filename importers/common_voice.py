"""Mozilla Common Voice: ``cv-corpus-<version>/<locale>/{train,dev,test}.tsv`` plus ``clips/*.mp3``.

Common Voice's own train/dev/test split is kept: it already keeps speakers
apart and is what published results are measured on.
"""
import logging
from pathlib import Path
from typing import Callable, Optional

from pydantic import BaseModel, ConfigDict, Field

from importers.archive import extract
from importers.assemble import Candidate, assemble, wav_name
from importers.deepspeech_csv import Reject
from importers.fetch import obtain
from importers.tsv import read_tsv
from pipeline.errors import DstrainError
from pipeline.paths import SPLITS, ImportedDataset

log = logging.getLogger("dstrain")
VERSION = 1  # bump when the output of prepare changes for the same input
LICENCE = "CC0-1.0"
HOMEPAGE = "https://commonvoice.mozilla.org/datasets"


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    release: str = Field(pattern=r"^cv-corpus-[A-Za-z0-9._-]+$",
                         description="release name, e.g. cv-corpus-21.0-2025-03-14")
    locale: str = Field(pattern=r"^[A-Za-z0-9-]+$", description="Common Voice locale, e.g. fr")
    archive: Optional[str] = Field(
        None, description="archive file name in sources/ (default <release>-<locale>.tar.gz)")
    url: Optional[str] = Field(None, description="where to download the archive from")
    sha256: Optional[str] = Field(None, pattern=r"^[0-9a-fA-F]{64}$")
    mdc_dataset_id: Optional[str] = Field(None, description="Mozilla Data Collective dataset id (needs MDC_API_KEY)")
    max_duration: float = Field(10.0, gt=0, description="longest clip kept, in seconds")


def archive_path(params: Params, sources: Path) -> Path:
    return Path(sources) / (params.archive or f"{params.release}-{params.locale}.tar.gz")


def download(params: Params, sources: Path) -> str:
    return obtain(
        archive_path(params, sources), params.sha256, params.url, params.mdc_dataset_id,
        f"Download it from {HOMEPAGE} (or set mdc_dataset_id and MDC_API_KEY, or url, for this dataset).",
    )


def _corpus_dir(extracted: Path, params: Params, archive: Path) -> Path:
    found = sorted(extracted.glob(f"*/{params.locale}/train.tsv"))
    if not found:
        raise DstrainError(
            f"{archive.name} holds no <release>/{params.locale}/train.tsv; "
            f"is it the Common Voice archive for locale {params.locale!r}?"
        )
    return found[0].parent


def prepare(archive: Path, sha256: str, out_dir: Path, normalize: Callable[[str], Optional[str]],
            params: Params, workers: int) -> dict:
    out = ImportedDataset(out_dir)

    def in_locale(name: str) -> bool:
        parts = name.split("/")
        return len(parts) < 2 or parts[1] == params.locale

    corpus = _corpus_dir(extract(archive, out.extracted, sha256, keep=in_locale), params, archive)
    candidates, rejects = [], []
    for split in SPLITS:
        tsv = corpus / (split + ".tsv")
        if not tsv.exists():
            raise DstrainError(f"{tsv.relative_to(out.extracted)} is missing from {archive.name}")
        for row in read_tsv(tsv, required=("path", "sentence")):
            where = f"{split}.tsv:{row.line}"
            if row.problem:
                rejects.append(Reject(split, where, "unreadable_row", row.problem))
                continue
            name, sentence = row.fields["path"], row.fields["sentence"]
            source = f"{where} {name}"
            if not sentence.strip():
                rejects.append(Reject(split, source, "empty_label", ""))
                continue
            label = normalize(sentence)
            if not label:
                rejects.append(Reject(split, source, "invalid_label", sentence))
                continue
            candidates.append(Candidate(split, source, corpus / "clips" / name, wav_name(name), label))
    return assemble(out, candidates, rejects, params.max_duration, workers, {
        "importer": "common_voice",
        "importer_version": VERSION,
        "source": {"archive": archive.name, "sha256": sha256, "url": params.url or HOMEPAGE},
        "release": params.release,
        "locale": params.locale,
        "licence": LICENCE,
    })
