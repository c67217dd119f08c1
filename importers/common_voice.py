"""Mozilla Common Voice: ``cv-corpus-<version>/<locale>/{train,dev,test}.tsv`` plus ``clips/*.mp3``.

Common Voice's own train/dev/test split is kept: it already keeps speakers
apart and is what published results are measured on.  The MP3s are decoded
straight from the archive, so a 25 GB release needs no extracted copy on disk.
"""
import os
from pathlib import Path
from typing import BinaryIO, Callable, Dict, Iterable, Iterator, Optional, Tuple

from pydantic import Field
from tqdm import tqdm

from dstrain.importers.kit.assemble import Candidate, claim_clips, wav_name
from dstrain.importers.kit.contract import Corpus, Found, Job
from dstrain.importers.kit.params import CorpusParams
from dstrain.importers.kit.rows import labelled, plain_name
from dstrain.importers.kit.tsv import read_tsv
from dstrain.pipeline.errors import DstrainError
from dstrain.pipeline.formats.audio import Clip, convert, convert_stream, read_member
from dstrain.pipeline.formats.deepspeech_csv import Reject
from dstrain.pipeline.paths import SPLITS, ImportedDataset
from dstrain.pipeline.sources.archive import canonical, tar_members
from dstrain.pipeline.sources.fetch import obtain


class Params(CorpusParams):
    release: str = Field(pattern=r"^cv-corpus-[A-Za-z0-9._-]+$",
                         description="release name, e.g. cv-corpus-21.0-2025-03-14")
    locale: str = Field(pattern=r"^[A-Za-z0-9-]+$", description="Common Voice locale, e.g. fr")
    mdc_dataset_id: Optional[str] = Field(None, description="Mozilla Data Collective dataset id (needs MDC_API_KEY)")


class CommonVoice(Corpus):
    Params = Params

    def download(self, params: Params, sources: Path) -> str:
        return obtain(self.archive_path(params, sources), params.sha256, params.url, params.mdc_dataset_id,
                      f"Download it from {self.homepage} (or set mdc_dataset_id and MDC_API_KEY, or url, for this "
                      "dataset).")

    def read(self, job: Job) -> Found:
        claim_clips(job.out, job.sha256)
        candidates, rejects = [], []
        # Read as the archive streams by: a TSV is never held whole, whatever its size.
        for split, member in _tsvs(job.archive, job.params.locale):
            for row in read_tsv(member, required=("path", "sentence"), name=f"{split}.tsv"):
                where = f"{split}.tsv:{row.line}"
                if row.problem:
                    rejects.append(Reject(split, where, "unreadable_row", row.problem))
                    continue
                name = row.fields["path"]
                source = f"{where} {name}"
                if not plain_name(split, source, name, rejects):
                    continue
                label = labelled(split, source, row.fields["sentence"], job.normalize, rejects)
                if label:
                    candidates.append(Candidate(split, source, Path(name), wav_name(name), label))
        clips = _convert_clips(job.archive, job.params.locale, job.out, {str(c.audio) for c in candidates},
                               job.workers, job.params.max_duration)
        return Found(candidates, rejects, {c.wav_name: clips[str(c.audio)] for c in candidates})


CORPUS = CommonVoice(licence="CC0-1.0", homepage="https://commonvoice.mozilla.org/datasets",
                     published="{release}-{locale}.tar.gz", reported=("release", "locale"),
                     # 2: rows naming a path are rejected (invalid_path), bounded decoding (too_large, bad_header).
                     version=2)


def _files(archive: Path, desc: str) -> Iterator[Tuple[Tuple[str, ...], Callable]]:
    """Each regular file of the archive named plainly, its path split, and how to open it; one streaming pass."""
    with tar_members(archive, desc) as entries:
        for name, kind, open_member in entries:
            parts = canonical(name)
            if kind == "file" and parts:
                yield parts, open_member


def _tsvs(archive: Path, locale: str) -> Iterator[Tuple[str, BinaryIO]]:
    """Each split's TSV of the locale, open, in archive order; stops reading as soon as it has them all."""
    wanted = {split + ".tsv": split for split in SPLITS}
    found = set()
    for parts, open_member in _files(archive, "read TSVs " + archive.name):
        if len(parts) == 3 and parts[1] == locale and parts[2] in wanted and wanted[parts[2]] not in found:
            found.add(wanted[parts[2]])
            with open_member() as member:
                yield wanted[parts[2]], member
            if len(found) == len(SPLITS):
                return
    missing = [split + ".tsv" for split in SPLITS if split not in found]
    raise DstrainError(f"{archive.name} holds no <release>/{locale}/{missing[0]}; "
                       f"is it the Common Voice archive for locale {locale!r}?")


def _convert_clips(archive: Path, locale: str, out: ImportedDataset, wanted: Iterable[str],
                   workers: int, max_seconds: float) -> Dict[str, Clip]:
    """Decode the wanted clips straight from the archive: no extracted copy of the MP3s on disk.

    WAVs already converted by an interrupted run are kept; a clip the TSVs name
    but the archive lacks is reported missing.
    """
    results: Dict[str, Clip] = {}
    todo: Dict[str, str] = {}
    for name in wanted:
        dst = out.clips / wav_name(name)
        if dst.exists():
            results[name] = convert((name, str(dst)))  # reads the WAV's header only
        else:
            todo[os.path.basename(name)] = str(dst)

    def jobs():
        for parts, open_member in _files(archive, "read clips " + archive.name):
            if len(parts) == 4 and parts[1] == locale and parts[2] == "clips" and parts[3] in todo:
                with open_member() as member:
                    data = read_member(member, max_seconds)
                yield parts[3], data, todo.pop(parts[3])

    with tqdm(total=len(todo), unit="clip", desc="convert " + out.dir.name) as bar:
        for name, clip in convert_stream(jobs(), workers, bar, max_seconds):
            results[name] = clip
    for name in todo:
        results[name] = Clip(False, reason="missing_audio", detail="not in the archive: " + name)
    return results
