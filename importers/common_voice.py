"""Mozilla Common Voice: ``cv-corpus-<version>/<locale>/{train,dev,test,validated}.tsv`` plus ``clips/*.mp3``.

The archive is ``<release>-<locale>.tar.gz`` in ``sources/``.  With no
release set, the one ``cv-corpus-*-<locale>.tar.gz`` there is used; the
release recorded is always the archive's own top folder, and a release that
is set but contradicted by that folder is refused (a renamed archive).

``split = "official"`` keeps Common Voice's own train/dev/test: it keeps
speakers apart and is what published results are measured on.
``split = "validated"`` trains on every validated clip instead (kit/resplit.py).
The MP3s are decoded straight from the archive, so a 25 GB release needs no
extracted copy on disk.
"""
import contextlib
import logging
import re
import tarfile
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, Dict, Iterable, Iterator, List, Literal, Optional, Tuple

from pydantic import Field

from dstrain.importers.kit.assemble import Candidate, Members, wav_name
from dstrain.importers.kit.contract import Corpus, Found, Job
from dstrain.importers.kit.params import CorpusParams
from dstrain.importers.kit.resplit import RULE, Recording, train_from_validated
from dstrain.importers.kit.rows import labelled, plain_name
from dstrain.importers.kit.tsv import copy_table, read_tsv
from dstrain.pipeline.errors import DstrainError
from dstrain.pipeline.formats.audio import read_member
from dstrain.pipeline.formats.deepspeech_csv import Reject
from dstrain.pipeline.paths import SPLITS, for_the_user
from dstrain.pipeline.sources.archive import canonical, tar_members
from dstrain.pipeline.sources.fetch import SourceError, obtain

log = logging.getLogger("dstrain")
_RELEASE = r"cv-corpus-[A-Za-z0-9._-]+"
#: Where the user sets the release, named in the messages (by the key languages give this dataset).
_SETTINGS = "release under [dataset.common_voice] in a config file, or DSTRAIN_DATASET__COMMON_VOICE__RELEASE"


class Params(CorpusParams):
    release: Optional[str] = Field(
        None, pattern="^" + _RELEASE + "$",
        description="release name, e.g. cv-corpus-21.0-2025-03-14 (default: that of the one "
                    "cv-corpus-*-<locale>.tar.gz in sources/)")
    locale: str = Field(pattern=r"^[A-Za-z0-9-]+$", description="Common Voice locale, e.g. fr")
    mdc_dataset_id: Optional[str] = Field(None, description="Mozilla Data Collective dataset id (needs MDC_API_KEY)")
    split: Literal["official", "validated"] = Field(
        "official", description="official: Common Voice's own train/dev/test; validated: train on every validated "
                                "clip whose speaker and sentence are not in the official dev/test")
    max_repeats: int = Field(5, ge=1, description="split validated: most recordings of one sentence kept in train")


class CommonVoice(Corpus):
    Params = Params

    def archive_path(self, params: Params, sources: Path) -> Path:
        """As published for the release set; with none set, the only release of the locale in ``sources``."""
        if params.archive or params.release:
            return super().archive_path(params, sources)
        found = placed(Path(sources), params.locale)
        # With none or several, download says so; this name is never created.
        return found[0] if len(found) == 1 else Path(sources) / f"cv-corpus-RELEASE-{params.locale}.tar.gz"

    def by_hand(self, params: Params) -> bool:
        return params.url is None and params.mdc_dataset_id is None

    def in_sources(self, params: Params, sources: Path) -> bool:
        # Several releases placed: download says which to choose.
        return self.archive_path(params, sources).exists() or bool(placed(Path(sources), params.locale))

    def download(self, params: Params, sources: Path) -> str:
        archive = self.archive_path(params, sources)
        if not (params.archive or params.release or archive.exists()):
            raise SourceError(_none_chosen(Path(sources), params.locale, self.homepage))
        sha256 = obtain(archive, params.sha256, params.url, params.mdc_dataset_id, self._how_to_get(params, sources))
        top = release_of(archive)
        if not params.release and not params.archive and _named(archive, params.locale) != top:
            log.warning("%s holds release %s (its top folder), whatever its name says: %s is what is recorded",
                        archive.name, top, top)
        if params.release and top != params.release:
            raise SourceError(
                f"{archive.name} holds release {top} (its top folder), not {params.release} as set for this "
                f"dataset: it was renamed, or the setting is wrong. Set release = \"{top}\", or unset release so "
                f"the archive's own is used ({_SETTINGS}).")
        return sha256

    def _how_to_get(self, params: Params, sources: Path) -> str:
        others = placed(Path(sources), params.locale)
        hint = (f" sources/ holds {', '.join(p.name for p in others)}: to use it instead, set release = "
                f"\"{_named(others[-1], params.locale)}\", or unset release when it is the only one "
                f"({_SETTINGS})." if others and not params.archive else "")
        return (f"Download it from {self.homepage} (or set mdc_dataset_id and MDC_API_KEY, or url, for this "
                f"dataset).{hint}")

    def manifest(self, archive: Path, sha256: str, params: Params) -> dict:
        # The release the archive holds, whatever its file is called.
        return dict(super().manifest(archive, sha256, params), release=release_of(archive))

    def read(self, job: Job) -> Found:
        """The rows as they are read (never all in memory), and the clips decoded straight from the archive."""
        params = job.params
        validated = params.split == "validated"
        rejects: List[Reject] = []
        facts: Dict[str, Any] = {}

        def candidates() -> Iterator[Candidate]:
            with _read_tsvs(job.archive, params.locale, ("dev", "test", "validated", "train") if validated
                            else SPLITS, params.release, job.out.dir) as tables:
                yield from _labelled_rows(tables, validated, job.normalize, params.max_repeats, rejects, facts)

        return Found(candidates(), rejects, _members(job.archive, params.locale, params.max_duration), facts)


CORPUS = CommonVoice(licence="CC0-1.0", homepage="https://commonvoice.mozilla.org/datasets",
                     published="{release}-{locale}.tar.gz", reported=("locale",),
                     # 2: the release is the archive's own; the validated split; rows naming a path are rejected
                     # (invalid_path); bounded decoding (too_large, bad_header).  3: a WAV is named with its clip's
                     # extension (x.mp3.wav); clashing names and clips listed twice are rejected.
                     version=3)


def _labelled_rows(tables: Dict[str, IO[bytes]], validated: bool, normalize, max_repeats: int,
                   rejects: List[Reject], facts: Dict[str, Any]) -> Iterator[Candidate]:
    """The clips to import with their labels, as the rows are read; the rows rejected go to ``rejects``, and
    how train was made (for the manifest) to ``facts``."""
    held_out: List[Recording] = []  # for the validated split only, which needs every dev/test speaker
    for split in ("dev", "test") if validated else SPLITS:
        for where, row in _rows(tables[split], split, rejects):
            if not plain_name(split, f"{where} {row['path']}", row["path"], rejects):
                continue
            label = labelled(split, f"{where} {row['path']}", row["sentence"], normalize, rejects)
            if validated:
                held_out.append(Recording(row["path"], row.get("client_id", ""), label, where))
            if label:
                yield _candidate(split, where, row["path"], label)
    facts["split"] = {"by": "official"}
    if validated:
        facts["split"], kept = _resplit(tables, held_out, normalize, rejects, max_repeats)
        yield from (_candidate("train", r.where, r.name, r.label) for r in kept)


def placed(sources: Path, locale: str) -> List[Path]:
    """The Common Voice archives of ``locale`` in ``sources``, as published: ``cv-corpus-*-<locale>.tar.gz``."""
    name = re.compile("^" + _RELEASE + "-" + re.escape(locale) + r"\.tar\.gz$")
    return sorted(p for p in sources.glob(f"cv-corpus-*-{locale}.tar.gz") if name.match(p.name) and p.is_file())


def _named(archive: Path, locale: str) -> str:
    """The release a file name says: cv-corpus-21.0-2025-03-14 for cv-corpus-21.0-2025-03-14-fr.tar.gz."""
    return archive.name[:-len(f"-{locale}.tar.gz")]


def _none_chosen(sources: Path, locale: str, homepage: str) -> str:
    found = placed(sources, locale)
    if found:
        names = "\n".join(f"    {p.name}" for p in found)
        return (f"{sources} holds {len(found)} Common Voice archives for locale {locale!r}:\n{names}\n"
                f"  Pick one: set release (e.g. release = \"{_named(found[-1], locale)}\") or archive (its "
                f"file name) for this dataset ({_SETTINGS}).")
    return (f"no Common Voice archive for locale {locale!r} in {for_the_user(sources)} (looked for "
            f"cv-corpus-*-{locale}.tar.gz). Download a release from {homepage} and place it there under its "
            f"published name; the release it holds is used. Or choose one: set release (e.g. "
            f"\"cv-corpus-21.0-2025-03-14\") and url or mdc_dataset_id to download it, or archive (the file name "
            f"of an archive named otherwise), for this dataset ({_SETTINGS}).")


def release_of(archive: Path) -> str:
    """The release an archive holds: the name of its top folder, as Common Voice packs it."""
    try:
        with tarfile.open(str(archive), "r|*") as tar:  # the first member says it: no need to read further
            for member in tar:
                top = member.name.lstrip("./").split("/")[0]
                if top:
                    return top
    except (OSError, EOFError, tarfile.TarError) as exc:
        raise SourceError(f"{archive.name} is not a readable tar archive ({exc}); is it a Common Voice "
                          "release, whole?") from None
    raise SourceError(f"{archive.name} is an empty archive")


def _rows(content: IO[bytes], table: str, rejects: List[Reject]) -> Iterator[Tuple[str, Dict[str, str]]]:
    """(where, fields) of each readable row of a TSV; the unreadable ones go to ``rejects``."""
    split = table if table in SPLITS else "train"
    content.seek(0)
    for row in read_tsv(content, required=("path", "sentence"), name=f"{table}.tsv"):
        where = f"{table}.tsv:{row.line}"
        if row.problem:
            rejects.append(Reject(split, where, "unreadable_row", row.problem))
        else:
            yield where, row.fields


def _resplit(tables: Dict[str, IO[bytes]], held_out: List[Recording], normalize, rejects: List[Reject],
             max_repeats: int) -> Tuple[Dict[str, Any], List[Recording]]:
    """The validated clips that may train (kit/resplit.py), and how the split was made, for the manifest."""
    official_train = {fields["path"] for _, fields in _rows(tables["train"], "train", [])}
    in_dev_test = {r.name for r in held_out}
    pool, skipped = [], 0
    for where, row in _rows(tables["validated"], "validated", rejects):
        if row["path"] in in_dev_test:
            skipped += 1
            continue
        if not plain_name("train", f"{where} {row['path']}", row["path"], rejects):
            continue
        label = labelled("train", f"{where} {row['path']}", row["sentence"], normalize, rejects)
        if label:
            pool.append(Recording(row["path"], row.get("client_id", ""), label, where))
    kept, counts = train_from_validated(pool, held_out, official_train, max_repeats)
    counts = dict(in_dev_test=skipped, **counts)
    return dict(by="validated", rule=RULE, max_repeats=max_repeats, counts=counts), kept


def _candidate(split: str, where: str, name: str, label: str) -> Candidate:
    # The audio is the member's path in the locale's folder, as the archive is read (_members).
    return Candidate(split, f"{where} {name}", Path("clips", name), wav_name(name), label)


def _files(archive: Path, desc: str) -> Iterator[Tuple[Tuple[str, ...], Callable]]:
    """Each regular file of the archive named plainly, its path split, and how to open it; one streaming pass."""
    with tar_members(archive, desc) as entries:
        for name, kind, open_member in entries:
            parts = canonical(name)
            if kind == "file" and parts:
                yield parts, open_member


#: A TSV up to this size is kept in memory; a larger one (train.tsv or validated.tsv of a big release) spills to a
#: temp file: the import's memory must not grow with the release, and the workers forked later inherit it.
_TSV_IN_MEMORY = 1 << 20
#: More than any table of a release (English's validated.tsv is under 1 GB).
_TSV_LIMIT = 4 << 30


@contextlib.contextmanager
def _read_tsvs(archive: Path, locale: str, tables: Iterable[str], release: Optional[str], scratch: Path
               ) -> Iterator[Dict[str, IO[bytes]]]:
    """The locale's TSVs named in ``tables``, copied out in the archive's one pass, which stops as soon as it has
    them.  The copies are spooled, when large, to a nameless file in ``scratch`` (the dataset's folder, under
    the data root, not a /tmp that may be small), and bounded as they are made: each line longer than any row
    is cut short (read_tsv still finds it too long), and a table over ``_TSV_LIMIT`` is refused."""
    wanted = {table + ".tsv": table for table in tables}
    with contextlib.ExitStack() as copies:
        found: Dict[str, IO[bytes]] = {}
        for parts, open_member in _files(archive, "read TSVs " + archive.name):
            if len(parts) == 3 and parts[1] == locale and parts[2] in wanted and wanted[parts[2]] not in found:
                if release and parts[0] != release:
                    raise DstrainError(f"{archive.name} holds release {parts[0]}, not {release} as set for this "
                                       "dataset")
                copy = copies.enter_context(tempfile.SpooledTemporaryFile(_TSV_IN_MEMORY, dir=str(scratch)))
                with open_member() as member:
                    copy_table(member, copy, _TSV_LIMIT, f"{archive.name}: {'/'.join(parts)}")
                found[wanted[parts[2]]] = copy
                if len(found) == len(wanted):
                    break
        missing = [name for name in wanted if wanted[name] not in found]
        if missing:
            raise DstrainError(f"{archive.name} holds no <release>/{locale}/{missing[0]}; "
                               f"is it the Common Voice archive for locale {locale!r}?")
        yield found


def _members(archive: Path, locale: str, max_seconds: float) -> Members:
    """The clips of the archive, in one streaming pass: no extracted copy of the MP3s on disk; a clip is read
    only when assemble wants it (bounded by ``max_seconds``: a huge member is never held)."""
    for parts, open_member in _files(archive, "read clips " + archive.name):
        if len(parts) == 4 and parts[1] == locale and parts[2] == "clips":
            def read(open_member=open_member) -> Optional[bytes]:
                with open_member() as member:
                    return read_member(member, max_seconds)

            yield "clips/" + parts[3], read
