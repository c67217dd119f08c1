"""Every path under the data root is named here, once, for writers and checkers alike."""
from pathlib import Path

SPLITS = ("train", "dev", "test")


class DataRoot:
    """The layout of one data root (``/data`` in the container), see DESIGN.md."""

    def __init__(self, root, run: str, language: str):
        self.root = Path(root)
        self.run_name = run
        self.language = language

    # Shared by every run on this host.
    @property
    def sources(self) -> Path:
        return self.root / "sources"

    def imported(self, dataset: str) -> Path:
        return self.root / "imported" / self.language / dataset

    # Owned by one run.
    @property
    def run(self) -> Path:
        return self.root / "runs" / self.run_name

    @property
    def config_file(self) -> Path:
        return self.run / "config.json"

    def record(self, stage: str) -> Path:
        return self.run / "state" / (stage + ".json")

    def log(self, stage: str) -> Path:
        return self.run / "logs" / (stage + ".log")

    @property
    def clean(self) -> Path:
        return self.run / "clean"

    def clean_csv(self, split: str) -> Path:
        return self.clean / (split + ".csv")

    @property
    def quarantine(self) -> Path:
        return self.clean / "quarantine.csv"

    @property
    def clean_report(self) -> Path:
        return self.clean / "report.md"

    @property
    def alphabet(self) -> Path:
        return self.run / "alphabet.txt"


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
