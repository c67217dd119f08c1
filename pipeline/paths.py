"""Every path under the data root is named here, once, for writers and checkers alike."""
import os
import unicodedata
from pathlib import Path
from typing import NamedTuple, Optional

SPLITS = ("train", "dev", "test")
#: How a set of clips is stored (settings' clips.format): DeepSpeech CSVs naming WAVs, or sample databases.
CLIP_FORMATS = ("wav", "sdb")
IMPORTED = "imported"
#: The container's data root, and the variable in which whoever mounted it there (docker-compose.yml) gives
#: the host's name for it: a user told where to put a file, or what to chown, acts on that name.
CONTAINER_ROOT = Path("/data")
OUTSIDE = "DSTRAIN_DATA_ON_HOST"


def on_host(path: Path) -> Optional[str]:
    """The host's name for ``path``, when it is under a data root mounted from the host."""
    outside = os.environ.get(OUTSIDE)
    if not outside:
        return None
    try:
        inside = Path(path).relative_to(CONTAINER_ROOT)
    except ValueError:
        return None
    return outside if inside == Path(".") else f"{outside.rstrip('/')}/{inside}"


#: The operating system's own directories. A data root there would mix dstrain's sources/, imported/ and
#: runs/ with the system's files, and advice to give the data root to a user would give away the system.
SYSTEM_DIRS = frozenset(
    ["/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/media", "/opt",
     "/proc", "/root", "/run", "/sbin", "/sys", "/tmp", "/usr", "/var"]
    + ["/usr/" + name for name in ("bin", "include", "lib", "lib32", "lib64", "libexec", "local", "sbin", "share",
                                   "src")]
    + ["/usr/local/" + name for name in ("bin", "etc", "games", "include", "lib", "lib64", "libexec", "man", "sbin",
                                         "share", "src")]
    + ["/var/" + name for name in ("backups", "cache", "lib", "local", "lock", "log", "mail", "opt", "run",
                                   "spool", "tmp")]
)
#: Kernel and configuration trees: nothing below them is a place for data.
NEVER_UNDER = ("/boot", "/dev", "/etc", "/proc", "/sys")


def real_path(path) -> Path:
    """Where the kernel would write for ``path``: every symbolic link followed before any ``..`` is applied, as
    the kernel does (``lnk/..``, with lnk a link to /usr/local/share, is /usr/local, not the current folder)."""
    return Path(os.path.realpath(os.path.expanduser(str(path))))


def system_dir_problem(path) -> Optional[str]:
    """Why dstrain must not write in ``path`` (a system directory, or below /etc, /proc, ...), or None."""
    real = real_path(path)
    if str(real) in SYSTEM_DIRS or any(Path(place) in real.parents for place in NEVER_UNDER):
        return f"{real} is a system directory"
    return None


def data_root_problem(root) -> Optional[str]:
    """Why ``root`` cannot be a data root (a file, a system directory), or None when it can."""
    # Resolved first, so that a symbolic link to / or /usr, lnk/.. or /data/../etc is seen for what it is.
    real = real_path(root)
    if system_dir_problem(real):
        return f"{real} is a system directory; a data root needs a folder of its own, such as ~/dstrain-data"
    for link in _written_links(real):
        target = real_path(link)
        if system_dir_problem(target):
            return (f"{link} is a link to {target}, a system directory, and dstrain writes in it; make it a folder "
                    "of the data root (rm it, then run again)")
    for path in (real, *real.parents):
        if path.exists():
            if path.is_dir():
                return None
            return f"{real} is a file, not a directory" if path == real else \
                f"{path} is a file, so it cannot hold the directory {real}"
    return None


#: The folders of a data root that dstrain writes in, down to a run's own (logs, state, lm, ...) and a dataset's.
_WRITTEN = ("*", "runs/*", "runs/*/*", IMPORTED + "/*", IMPORTED + "/*/*")


def _written_links(real: Path):
    """The symbolic links among the folders of the data root ``real`` that dstrain writes in: where one leads
    is where the kernel writes."""
    for pattern in _WRITTEN:
        for path in sorted(real.glob(pattern)):
            if path.is_symlink():
                yield path


def folded(name: str) -> str:
    """A file name as a file system that ignores case and Unicode normalisation sees it: names that fold
    alike (``X.mp3`` and ``x.mp3``) are one file on macOS's and Windows' disks, a Docker Desktop bind mount or
    a network share, so two inputs whose outputs fold alike would end up in one file."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())


def printable(name: str) -> str:
    """``name`` as UTF-8 can write it (in a CSV, a record): a byte of another encoding in a file name, which
    Python holds as a lone surrogate, is shown as ``\\udcXX``."""
    return name.encode("utf-8", "backslashreplace").decode("utf-8")


def for_the_user(path: Path) -> str:
    """``path``, and in a container also its place on the host."""
    outside = on_host(path)
    return f"{path} (on the host: {outside})" if outside else str(path)


class ClipSet(NamedTuple):
    """One of train, dev and test, as DeepSpeech reads it (pipeline/formats/sets.py)."""

    #: What DeepSpeech reads: ``<split>.csv``, or the sample database ``<split>.sdb``.
    data: Path
    #: Its clips, one row each in DeepSpeech's CSV columns: the CSV itself, or ``<split>.sdb.csv`` beside the
    #: database, in its order.
    listing: Path
    format: str


def clip_set(directory: Path, split: str, clip_format: str) -> ClipSet:
    if clip_format == "sdb":
        data = Path(directory) / (split + ".sdb")
        return ClipSet(data, data.with_name(data.name + ".csv"), clip_format)
    data = Path(directory) / (split + ".csv")
    return ClipSet(data, data, clip_format)


class DataRoot:
    """The layout of one data root (``/data`` in the container), see docs/architecture.md.  ``clip_format``
    (clips.format) says how the run's sets of clips are stored."""

    def __init__(self, root, run: str, language: str, clip_format: str = "wav"):
        self.root = Path(root)
        self.run_name = run
        self.language = language
        self.clip_format = clip_format

    # Shared by every run on this host.
    @property
    def sources(self) -> Path:
        return self.root / "sources"

    def imported(self, dataset: str) -> Path:
        return self.root / IMPORTED / self.language / dataset

    def dataset_of(self, clip: str) -> Optional[str]:
        """The dataset a clip was imported into, read back from its path (as DeepSpeech reports it, through
        whatever mount of the data root): ``.../imported/<lang>/<dataset>/...``; None for any other path."""
        parts = Path(os.path.normpath(clip)).parts
        for i in range(len(parts) - 3):
            if parts[i] == IMPORTED and parts[i + 1] == self.language:
                return parts[i + 2]
        return None

    # Owned by one run.
    @property
    def run(self) -> Path:
        return self.root / "runs" / self.run_name

    @property
    def config_file(self) -> Path:
        return self.run / "config.json"

    @property
    def temporary(self) -> Path:
        """The TMPDIR of the programs a run starts (pipeline/processes.py), emptied when a run starts."""
        return self.run / "tmp"

    def record(self, stage: str) -> Path:
        return self.run / "state" / (stage + ".json")

    def failure(self, stage: str) -> Path:
        """Why ``stage`` last failed, and the command that resumes; removed when the stage finishes."""
        return self.run / "state" / (stage + ".failed.json")

    def log(self, stage: str) -> Path:
        return self.run / "logs" / (stage + ".log")

    @property
    def clean(self) -> Path:
        return self.run / "clean"

    def clean_set(self, split: str) -> ClipSet:
        """A set clean wrote, in the run's format: what DeepSpeech reads, and its listing."""
        return clip_set(self.clean, split, self.clip_format)

    @property
    def clean_work(self) -> Path:
        """clean's scratch database while it runs (the rows it kept, the clips it has seen)."""
        return self.clean / ".clean.sqlite"

    @property
    def quarantine(self) -> Path:
        return self.clean / "quarantine.csv"

    @property
    def clean_report(self) -> Path:
        return self.clean / "report.md"

    @property
    def alphabet(self) -> Path:
        return self.run / "alphabet.txt"

    @property
    def lm(self) -> Path:
        return self.run / "lm"

    @property
    def lm_corpus(self) -> Path:
        return self.lm / "corpus.txt"

    def lm_vocab(self, top_k: int) -> Path:
        return self.lm / f"vocab-{top_k}.txt"

    @property
    def lm_arpa(self) -> Path:
        return self.lm / "lm.arpa"

    @property
    def lm_filtered_arpa(self) -> Path:
        return self.lm / "lm_filtered.arpa"

    @property
    def lm_binary(self) -> Path:
        return self.lm / "lm.binary"

    @property
    def scorer(self) -> Path:
        return self.lm / "kenlm.scorer"

    @property
    def lm_report(self) -> Path:
        return self.lm / "report.md"

    def lm_step(self, step: str) -> Path:
        """The record of one step of the lm stage (corpus, model, scorer), so a rerun redoes only what changed."""
        return self.lm / (step + ".done.json")

    @property
    def optimize(self) -> Path:
        return self.run / "optimize"

    @property
    def optimized_scorer(self) -> Path:
        """The scorer rebuilt with the alpha and beta the optimize stage found."""
        return self.optimize / "kenlm.scorer"

    @property
    def optimize_result(self) -> Path:
        return self.optimize / "alpha_beta.json"

    @property
    def optimize_trials(self) -> Path:
        return self.optimize / "trials.json"

    # Training, evaluation, export and packaging.
    @property
    def checkpoints(self) -> Path:
        """DeepSpeech's own checkpoint directory for this run."""
        return self.run / "checkpoints"

    @property
    def training_progress(self) -> Path:
        """The pipeline's count of finished epochs: DeepSpeech restarts its own at 0 on every resume."""
        return self.checkpoints / "dstrain-progress.json"

    @property
    def best_backup(self) -> Path:
        """Hard links to the best checkpoint, kept while a resumed DeepSpeech could overwrite it."""
        return self.checkpoints / "dstrain-best"

    @property
    def summaries(self) -> Path:
        return self.run / "summaries"

    @property
    def feature_cache(self) -> Path:
        """A file prefix: TensorFlow writes features.index, features.data-* beside it."""
        return self.run / "cache" / "features"

    @property
    def reports(self) -> Path:
        return self.run / "reports"

    @property
    def metrics(self) -> Path:
        return self.reports / "metrics.json"

    @property
    def test_output(self) -> Path:
        return self.reports / "test_output.json"

    @property
    def loss_curve(self) -> Path:
        return self.reports / "loss.png"

    @property
    def report_md(self) -> Path:
        return self.reports / "report.md"

    @property
    def report_html(self) -> Path:
        return self.reports / "report.html"

    @property
    def report_clips(self) -> Path:
        """The report's sample clips as WAVs, for its players, when the test set is a sample database."""
        return self.reports / "clips"

    @property
    def models(self) -> Path:
        return self.run / "models"

    def model(self, extension: str) -> Path:
        """output_graph.tflite, .pb or .pbmm; DeepSpeech's default export name."""
        return self.models / ("output_graph." + extension)

    def model_metadata(self, extension: str) -> Path:
        """The metadata file DeepSpeech writes beside an exported model."""
        return self.models / ("output_graph." + extension + ".md")

    def model_zip(self, language_tag: str) -> Path:
        """DeepSpeech's export zip, named after the model's language tag as the original pipeline's fr-fr.zip."""
        return self.models / (language_tag.lower() + ".zip")

    def export_scratch(self, kind: str) -> Path:
        """Where one DeepSpeech export writes before its files are moved into ``models/``."""
        return self.models / (".export-" + kind)

    @property
    def package(self) -> Path:
        return self.run / "package"

    @property
    def smoke(self) -> Path:
        """The smoke training's throwaway directory, deleted when it ends."""
        return self.run / "smoke"

    @property
    def smoke_record(self) -> Path:
        """The last smoke training that passed, so a rerun before training starts does not repeat it."""
        return self.record("smoke-training")


class ImportedDataset:
    """The layout of ``imported/<lang>/<dataset>/``, written by an importer's ``prepare``."""

    def __init__(self, directory):
        self.dir = Path(directory)

    @property
    def extracted(self) -> Path:
        return self.dir / "extracted"

    @property
    def clips(self) -> Path:
        return self.dir / "clips"

    def csv(self, split: str) -> Path:
        return self.dir / (split + ".csv")

    def set(self, split: str, clip_format: str) -> ClipSet:
        return clip_set(self.dir, split, clip_format)

    @property
    def spool(self) -> Path:
        """Clips converted for sample databases, kept across a crash until the databases are written."""
        return self.dir / "spool"

    @property
    def ledger(self) -> Path:
        """The import's scratch database while it runs (importers/kit/ledger.py)."""
        return self.dir / ".import.sqlite"

    @property
    def rejects(self) -> Path:
        return self.dir / "rejects.csv"

    @property
    def manifest(self) -> Path:
        return self.dir / "manifest.json"

    @property
    def record(self) -> Path:
        return self.dir / "import.done.json"


def verified_record(archive: Path) -> Path:
    """Where a download's verification (sha256, size, mtime) is remembered."""
    return archive.with_name(archive.name + ".verified.json")


def partial(path: Path) -> Path:
    """The in-flight name of a download."""
    return path.with_name(path.name + ".part")


def partial_validator(path: Path) -> Path:
    """The ETag or Last-Modified of the file a ``.part`` is a piece of."""
    return path.with_name(path.name + ".part.json")


def lock(path: Path) -> Path:
    """The lock file of a run directory or a shared output (a source, an imported dataset), in a hidden
    ``.locks`` folder beside it; never deleted, as removing a lock file someone waits on would let two in."""
    return path.parent / ".locks" / (path.name + ".lock")
