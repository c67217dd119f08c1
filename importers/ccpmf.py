"""CCPMF: conferences of the Centre de Conférences Pierre Mendès-France (French ministry of the economy), 2012-2020.

data.economie.gouv.fr publishes one zip split into numbered parts
(``transcriptionsxml_audiomp3_mefr_ccpmf_2012-2020_2.zip.001`` to ``.040``)
that are joined byte for byte.  That zip holds a second one,
``transcriptionsXML_audioMP3_MEFR_CCPMF_2012-2020.zip``, whose
``transcriptionsXML_audioMP3_MEFR_CCPMF_2012-2020/<year>/`` folders hold one
MP3 per recording (hours long) and an XML transcript of it.  Their names start
with the date, ``20130624_AssisesEuropeennes_1_wmv_0_fre_minefi.xml``, but an
MP3 is not always named exactly like its XML: they are paired by date, then by
the most name parts in common.

The XML root holds ``<row timestamp="<start s>" timedur="<duration s>">text</row>``
elements in time order.  Consecutive rows are joined into one segment while
the silence between them is at most ``max_gap`` and the segment stays within
``max_duration``.  The transcripts' known glitches are tidied first (``tidy``,
with its ``CASES``), then numbers are spelled out (kit/spoken_numbers.py); each MP3 is
decoded once and cut (pipeline/formats/recordings.py).  The XML names no speakers, and
the recordings of one day are parts of one event with the same speakers, so
the split is by day (kit/split.py).
"""
import os
import re
import shutil
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Tuple

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, parse
from pydantic import Field, field_validator
from tqdm import tqdm

from dstrain.importers.kit.assemble import Candidate
from dstrain.importers.kit.clipstore import claim_clips
from dstrain.importers.kit.contract import Corpus, Found, Job
from dstrain.importers.kit.params import SpeakerSplit
from dstrain.importers.kit.rows import labelled
from dstrain.importers.kit.split import split_of
from dstrain.importers.kit.spoken_numbers import spell_numbers, supported
from dstrain.pipeline.errors import DstrainError
from dstrain.pipeline.formats.deepspeech_csv import Reject
from dstrain.pipeline.formats.recordings import Recording, Segment, cut_all
from dstrain.pipeline.paths import ImportedDataset, folded, verified_record
from dstrain.pipeline.sources.archive import extract
from dstrain.pipeline.sources.fetch import adopt, fetch

_DATE = re.compile(r"^[0-9]{8}$")
#: Far more than the transcript of a day of sessions (the real ones are under 1 MB): a larger XML, inflated from
#: a small zip, is not parsed into memory.
MAX_XML_BYTES = 64 << 20


class Params(SpeakerSplit):
    language: str = Field("fr", description="num2words language that spells out the transcripts' numbers")
    archive: str = Field("transcriptionsxml_audiomp3_mefr_ccpmf_2012-2020_2.zip",
                         description="the whole zip's file name in sources/")
    parts: Tuple[str, ...] = Field(
        (), description="URLs of the zip's numbered parts (.zip.001, .zip.002, ...), in order; they are joined")
    max_gap: float = Field(0.3, ge=0, description="longest silence between two rows joined into a segment, in seconds")

    @field_validator("language")
    @classmethod
    def _num2words_knows_it(cls, value):
        if not supported(value):
            raise ValueError(f"num2words has no language {value!r}")
        return value


class Ccpmf(Corpus):
    Params = Params

    def how_to_get(self, params: Params) -> str:
        return (f"Download its parts from {self.homepage} (attachments) into that directory, named as published: "
                f"{params.archive}.001, {params.archive}.002, and so on (they are joined in that order); or set "
                "parts (their URLs, in order) or url for this dataset.")

    def by_hand(self, params: Params) -> bool:
        return not params.parts and params.url is None

    def in_sources(self, params: Params, sources: Path) -> bool:
        archive = self.archive_path(params, sources)
        return archive.exists() or bool(_placed_parts(archive))

    def download(self, params: Params, sources: Path) -> str:
        """The zip as one file (placed by hand or downloaded from url), or joined from its numbered parts."""
        archive = self.archive_path(params, sources)
        pieces = [] if archive.exists() else _fetch_parts(params, archive)
        if not pieces:
            return super().download(params, sources)
        _join(pieces, archive)
        digest = adopt(archive, params.sha256, f"joined from {len(pieces)} parts")
        for piece in pieces:  # the zip is verified: the parts would only double the disk used
            piece.unlink()
            verified_record(piece).unlink(missing_ok=True)
        return digest

    def describe(self, params: Params) -> dict:
        return dict(super().describe(params),
                    segments={"max_duration": params.max_duration, "max_gap": params.max_gap},
                    numbers={"spelled_by": "num2words", "language": params.language})

    def read(self, job: Job) -> Found:
        params, out = job.params, job.out
        found = sorted(_unpack(job).rglob("*"))
        xmls = [p for p in found if p.suffix.lower() == ".xml"]
        if not xmls:
            raise DstrainError(f"{job.archive.name} holds no XML transcripts; is it the CCPMF archive?")
        pairs, unpaired = _pairs(xmls, [p for p in found if p.suffix.lower() == ".mp3"])

        def split_for(path: Path) -> str:  # by day: a day's recordings are one event's, with the same speakers
            day = path.stem.split("_")[0]
            return split_of(day if _DATE.match(day) else path.stem, params.split)

        rejects: List[Reject] = [Reject(split_for(m), _name(m), "no_transcript", "no XML of the same date")
                                 for m in unpaired]
        candidates, recordings, seen = [], [], {}
        # Clip names, and the recording's decoded copy, start with the transcript's name: two names that differ
        # only in case would share those files where case is ignored.
        stems: Dict[str, List[str]] = {}
        for xml, _ in pairs:
            stems.setdefault(folded(xml.stem), []).append(_name(xml))
        for xml, mp3 in pairs:
            split, where = split_for(xml), _name(xml)
            if mp3 is None:
                rejects.append(Reject(split, where, "missing_audio", "no MP3 of the same date"))
                continue
            if xml.stem in seen:  # clip names start with it
                rejects.append(Reject(split, where, "duplicate",
                                      "a transcript of the same name is at " + seen[xml.stem]))
                continue
            seen[xml.stem] = where
            clashing = [other for other in stems[folded(xml.stem)] if other.split("/")[-1] != xml.name]
            if clashing:
                rejects.append(Reject(split, where, "name_clash", f"its name and {', '.join(clashing)}'s differ "
                                      "only in case: where case is ignored their clips would be one file"))
                continue
            pieces = []
            for run in segments(_rows(xml, where, split, rejects), params.max_duration, params.max_gap):
                start, end = run[0].start, max(row.end for row in run)
                source = f"{where} " + (f"row {run[0].number}" if len(run) == 1 else
                                        f"rows {run[0].number}-{run[-1].number}")
                text = spell_numbers(tidy(" ".join(row.text for row in run)), params.language)
                label = labelled(split, source, text, job.normalize, rejects)
                if label:
                    wav = f"{xml.stem}_{round(start * 1000):08d}_{round(end * 1000):08d}.wav"
                    pieces.append(Segment(start, end, str(out.clips / wav)))
                    candidates.append(Candidate(split, source, out.clips / wav, wav, label))
            if pieces:
                recordings.append(Recording(str(mp3), tuple(pieces), str(_decoded(out) / (xml.stem + ".wav"))))
        return Found(*_cut(out, job.sha256, recordings, candidates, rejects, job.workers))


CORPUS = Ccpmf(
    # Published by the ministry on data.economie.gouv.fr under the Licence Ouverte.
    licence="Licence Ouverte / Open Licence 2.0 (Etalab)",
    homepage="https://data.economie.gouv.fr/explore/dataset/transcriptionsxml_audiomp3_mefr_ccpmf_2012-2020/",
    split={"by": "day"})


# The transcripts' glitches, found in the ministry's files by DeepSpeech 0.9.3's importer (bin/import_ccpmf.py
# names them).  The words are French because the corpus is: "14:30" is said "quatorze heures trente".
_TIME = re.compile(r"(?<![\d:])(\d{1,2}):(\d{2})(?::(\d{2}))?(?![\d:])")
#: "2019/2020", "2019/20": two years, said one after the other.
_YEARS = re.compile(r"(?<![\d/])((?:1[89]|20)\d\d)/(\d{2}|(?:1[89]|20)\d\d)(?![\d/])")
#: "70-80", "70–80": a range, said as its two ends (a hyphen would glue them for num2words).
_RANGE = re.compile(r"(?<=\d)[-\u2013](?=\d)")
#: Stray markup such as "[end]" (20150123_Entretiens_Tresor_PGM): nothing anyone says.
_MARKUP = re.compile(r"\[\s*/?[A-Za-z]+\s*\]")


#: Hours said with the feminine "une" (heure is feminine), which num2words would write "un".
_FEMININE_HOURS = {"1": "une heure", "01": "une heure", "21": "vingt et une heures"}


def _spoken_time(match) -> str:
    hours, minutes, seconds = match.groups()
    said = _FEMININE_HOURS.get(hours, f"{hours} heures")
    if seconds is not None:
        return f"{said} {minutes} minutes {seconds} secondes"
    return said + ("" if minutes == "00" else f" {minutes}")


def tidy(text: str) -> str:
    """A transcript with its known glitches turned into what was said, ready for spell_numbers."""
    if "[" in text:
        text = _MARKUP.sub(" ", text)
    if any(c.isdigit() for c in text):
        text = _RANGE.sub(" ", _YEARS.sub(r"\1 \2", _TIME.sub(_spoken_time, text)))
    return text


CASES = (
    ("La séance reprend à 14:30.", "La séance reprend à 14 heures 30."),
    ("Rendez-vous à 9:00 puis à 18:05", "Rendez-vous à 9 heures puis à 18 heures 05"),
    ("Il a couru 1:02:03 exactement", "Il a couru une heure 02 minutes 03 secondes exactement"),
    ("De 21:00 à 01:15", "De vingt et une heures à une heure 15"),
    ("Le budget 2019/2020 et la saison 2021/22", "Le budget 2019 2020 et la saison 2021 22"),
    ("Entre 70-80 personnes, ou 10–20 %", "Entre 70 80 personnes, ou 10 20 %"),
    ("Merci à tous. [end]", "Merci à tous.  "),
    ("[END] Fin de la séance [ /end ]", "  Fin de la séance  "),
    # Left alone: a fraction, a date, a negative number, words with hyphens, bracketed words and numbers.
    ("1/2, 12/03/2019, -5, peut-être, [rires 2]", "1/2, 12/03/2019, -5, peut-être, [rires 2]"),
)


def _placed_parts(archive: Path) -> List[Path]:
    return sorted(p for p in archive.parent.glob(archive.name + ".[0-9][0-9][0-9]"))


def _fetch_parts(params: Params, archive: Path) -> List[Path]:
    """The numbered parts, downloaded if ``parts`` names them, else those placed by hand beside the archive."""
    if not params.parts:
        return _placed_parts(archive)
    pieces = [archive.with_name(f"{archive.name}.{number:03d}") for number in range(1, len(params.parts) + 1)]
    for url, piece in zip(params.parts, pieces):
        if not piece.exists():  # a part is renamed into place only once whole
            fetch(url, piece, None)
    return pieces


def _join(pieces: List[Path], archive: Path) -> None:
    joined = archive.with_name(archive.name + ".joining")
    with joined.open("wb") as out, tqdm(total=sum(p.stat().st_size for p in pieces), unit="B", unit_scale=True,
                                        desc="join " + archive.name, leave=False) as bar:
        for piece in pieces:
            with piece.open("rb") as part:
                for block in iter(lambda part=part: part.read(1 << 20), b""):
                    out.write(block)
                    bar.update(len(block))
    os.replace(str(joined), str(archive))


def _unpack(job: Job) -> Path:
    """Extract the zip, then each zip inside it, deleting an inner zip once it is extracted."""
    extracted = job.extract()
    for inner in sorted(extracted.rglob("*.zip")):
        extract(inner, inner.with_suffix(""), job.sha256 + "/" + inner.name)
        inner.unlink()
    return extracted


def _score(xml: Path, mp3: Path) -> Tuple[bool, int]:
    """How well an MP3's name matches an XML's: the same name, then the parts in the same places."""
    a, b = xml.stem.split("_"), mp3.stem.split("_")
    return xml.stem == mp3.stem, sum(x == y for x, y in zip(a, b))


def _pairs(xmls: List[Path], mp3s: List[Path]) -> Tuple[List[Tuple[Path, Optional[Path]]], List[Path]]:
    """Each XML with the MP3 of the same date whose name matches it best; and the MP3s left over."""
    def date(path: Path) -> str:
        return path.stem.split("_")[0]

    ranked = sorted(((_score(x, m), x, m) for x in xmls for m in mp3s if date(x) == date(m)),
                    key=lambda t: (not t[0][0], -t[0][1], t[1], t[2]))
    audio_of: Dict[Path, Path] = {}
    used = set()
    for _, xml, mp3 in ranked:
        if xml not in audio_of and mp3 not in used:
            audio_of[xml] = mp3
            used.add(mp3)
    return [(x, audio_of.get(x)) for x in xmls], [m for m in mp3s if m not in used]


def _name(path: Path) -> str:
    """How rejects.csv names a file: its folder (the year) and its name."""
    return f"{path.parent.name}/{path.name}"


class Row(NamedTuple):
    number: int
    start: float
    end: float
    text: str


def _rows(xml: Path, where: str, split: str, rejects: List[Reject]) -> List[Optional[Row]]:
    """The XML's rows in order; None stands for an unreadable row, whose reject is recorded."""
    size = xml.stat().st_size
    if size > MAX_XML_BYTES:
        rejects.append(Reject(split, where, "too_large", f"{size} bytes; no transcript is over {MAX_XML_BYTES} bytes"))
        return []
    try:
        # defusedxml: entities are refused, so a few kB that expand to gigabytes (billion laughs) are never
        # expanded, whatever the expat of the machine.
        root = parse(str(xml)).getroot()
    except ParseError as exc:
        rejects.append(Reject(split, where, "unreadable_row", f"not well-formed XML: {exc}"))
        return []
    except DefusedXmlException as exc:
        rejects.append(Reject(split, where, "unreadable_row", f"declares entities, which a transcript never needs "
                                                            f"({exc!r})"))
        return []
    rows: List[Optional[Row]] = []
    for number, element in enumerate(root.iter("row"), start=1):
        try:
            start, length = float(element.attrib["timestamp"]), float(element.attrib["timedur"])
        except (KeyError, ValueError):
            problem = f"needs numbers in timestamp and timedur, has {dict(element.attrib)}"
            rejects.append(Reject(split, f"{where} row {number}", "unreadable_row", problem))
            rows.append(None)
            continue
        if start < 0 or length < 0:
            rejects.append(Reject(split, f"{where} row {number}", "unreadable_row", "negative timestamp or timedur"))
            rows.append(None)
            continue
        rows.append(Row(number, start, start + length, " ".join("".join(element.itertext()).split())))
    return rows


def segments(rows: List[Optional[Row]], max_seconds: float, max_gap: float) -> List[List[Row]]:
    """Runs of consecutive rows, each run as long as it may be; an unreadable row ends a run."""
    runs: List[List[Row]] = []
    for row in rows:
        run = runs[-1] if runs else None
        if (row is not None and run and run[-1] is not None and run[-1].start <= row.start
                and row.start - run[-1].end <= max_gap and row.end - run[0].start <= max_seconds):
            run.append(row)
        else:
            runs.append([row])
    return [run for run in runs if run[0] is not None]


def _decoded(out: ImportedDataset) -> Path:
    """Where whole recordings are decoded while they are cut."""
    return out.dir / "decoded"


def _cut(out: ImportedDataset, sha256: str, recordings: List[Recording], candidates: List[Candidate],
         rejects: List[Reject], workers: int):
    """Cut every segment; those that cannot be cut move from the candidates to the rejects."""
    claim_clips(out, sha256)  # as assemble would: clips of another archive are not reused
    _decoded(out).mkdir(exist_ok=True)
    failed = {}
    with tqdm(total=sum(len(r.segments) for r in recordings), unit="segment", desc="cut " + out.dir.name) as bar:
        for recording, clips in zip(recordings, cut_all(recordings, workers, bar)):
            for segment, clip in zip(recording.segments, clips):
                if not clip.ok:
                    failed[segment.wav] = clip
    shutil.rmtree(str(_decoded(out)))
    # Segments of an earlier segmentation (other max_duration or max_gap): no CSV can name them.
    wanted = {c.wav_name for c in candidates}
    for stale in out.clips.glob("*.wav"):
        if stale.name not in wanted:
            stale.unlink()
    kept = []
    for cand in candidates:
        clip = failed.get(str(cand.audio))
        if clip is None:
            kept.append(cand)
        else:
            rejects.append(Reject(cand.split, cand.source, clip.reason, clip.detail))
    return kept, rejects
