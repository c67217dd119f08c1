"""Small corpora in their real on-disk formats, with real speech made by espeak-ng."""
import random
import shutil
import subprocess
import tarfile
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional

CV_COLUMNS = ("client_id", "path", "sentence_id", "sentence", "sentence_domain", "up_votes", "down_votes",
              "age", "gender", "accents", "variant", "locale", "segment")


def speak(text: str, mp3: Path, voice: str = "fr", speed: int = 175) -> None:
    """Real speech as MP3, the way Common Voice ships it (48 kHz)."""
    with tempfile.NamedTemporaryFile(suffix=".wav") as wav:
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", wav.name, text], check=True)
        subprocess.run(["lame", "--quiet", "--resample", "48", wav.name, str(mp3)], check=True)


class Row(NamedTuple):
    split: str
    clip: str
    sentence: str
    #: What espeak says; defaults to the sentence.
    spoken: Optional[str] = None
    #: "speech", "corrupt", "empty" or "missing".
    audio: str = "speech"
    #: Raw bytes replacing the whole TSV line (for encoding errors).
    raw_line: Optional[bytes] = None
    speed: int = 175


# The expected outcome of each row, so tests can assert exactly what is kept and why.
GOOD = "kept"

FR_ROWS: List[Row] = [
    Row("train", "fr_train_01.mp3", "Bonjour à tous et bienvenue."),
    Row("train", "fr_train_02.mp3", "Il a dit « bonjour sans fermer les guillemets."),
    Row("train", "fr_train_03.mp3", "Le chat dort sur le canapé."),
    Row("train", "fr_train_04.mp3", "Nous irons à la plage demain matin."),
    Row("train", "fr_train_05.mp3", "Elle lit un livre près de la fenêtre."),
    Row("train", "fr_train_06.mp3", "Le train part à l’heure."),
    Row("train", "fr_train_07.mp3", "Les enfants jouent dans le jardin."),
    Row("train", "fr_train_08.mp3", "Où est la gare ?"),
    Row("train", "fr_train_09.mp3", "La mer est calme ce soir."),
    Row("train", "fr_bad_corrupt.mp3", "Ce fichier est abîmé.", audio="corrupt"),
    Row("train", "fr_bad_empty.mp3", "Ce fichier est vide.", audio="empty"),
    Row("train", "fr_bad_missing.mp3", "Ce fichier manque.", audio="missing"),
    Row("train", "fr_bad_nolabel.mp3", "", spoken="rien"),
    Row("train", "fr_bad_digits.mp3", "J'ai 3 chats.", spoken="j'ai trois chats"),
    Row("train", "fr_bad_cyrillic.mp3", "Привет мир", spoken="privet mir"),
    Row("train", "fr_bad_tooshort.mp3",
        "Cette phrase est beaucoup trop longue pour un enregistrement qui ne contient qu'un seul mot "
        "prononcé très vite, et le modèle ne pourrait jamais aligner tous ces caractères.",
        spoken="oui", speed=400),
    Row("train", "fr_bad_toolong.mp3", "Une phrase lente.",
        spoken="une phrase lente, lente, très lente, qui dure vraiment longtemps, bien plus que la limite",
        speed=80),
    Row("train", "fr_bad_utf8.mp3", "",
        raw_line=b"client\tfr_bad_utf8.mp3\tid\tCaf\xe9 cr\xe8me\t\t2\t0\t\t\t\t\tfr\t\n"),
    Row("train", "fr_shared_01.mp3", "La lune brille."),
    Row("dev", "fr_dev_01.mp3", "Le soleil se lève à l'est."),
    Row("dev", "fr_dev_02.mp3", "La lune brille."),
    Row("dev", "fr_dev_03.mp3", "Il pleut depuis ce matin."),
    Row("test", "fr_test_01.mp3", "Le vent souffle fort aujourd'hui."),
    Row("test", "fr_test_02.mp3", "Nous mangeons des pommes."),
    Row("test", "fr_test_03.mp3", "Le café est chaud."),
]

#: Why each bad row must be rejected at import (max_duration set to 5 s by the tests).
FR_EXPECTED_REJECTS: Dict[str, str] = {
    "fr_bad_corrupt.mp3": "undecodable_audio",
    "fr_bad_empty.mp3": "empty_audio",
    "fr_bad_missing.mp3": "missing_audio",
    "fr_bad_nolabel.mp3": "empty_label",
    "fr_bad_digits.mp3": "invalid_label",
    "fr_bad_cyrillic.mp3": "invalid_label",
    "fr_bad_tooshort.mp3": "too_short",
    "fr_bad_toolong.mp3": "too_long",
    "fr_bad_utf8.mp3": "unreadable_row",
}


def build_common_voice(out_dir: Path, rows=FR_ROWS, release="cv-corpus-99.0-2099-01-01", locale="fr",
                       voice="fr", extra_clips: int = 0) -> Path:
    """Write ``<release>-<locale>.tar.gz`` in Common Voice's layout; return its path.

    ``extra_clips`` adds that many more good training rows (for benchmarks).
    """
    rows = list(rows) + [
        Row("train", f"fr_extra_{i:05d}.mp3", f"phrase numéro {_words(i)}")
        for i in range(extra_clips)
    ]
    stage = Path(tempfile.mkdtemp(dir=str(out_dir)))
    corpus = stage / release / locale
    (corpus / "clips").mkdir(parents=True)

    def make(row: Row) -> None:
        target = corpus / "clips" / row.clip
        if row.audio == "speech" and row.raw_line is None:
            speak(row.spoken or row.sentence, target, voice, row.speed)
        elif row.audio == "corrupt":
            target.write_bytes(bytes(random.Random(row.clip).getrandbits(8) for _ in range(3000)))
        elif row.audio == "empty":
            target.write_bytes(b"")

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(make, rows))
    for split in ("train", "dev", "test", "validated", "invalidated", "other"):
        lines = [("\t".join(CV_COLUMNS) + "\n").encode()]
        for n, row in enumerate(r for r in rows if r.split == split or (split == "validated" and r.split in
                                                                           ("train", "dev", "test"))):
            if row.raw_line is not None:
                lines.append(row.raw_line)
                continue
            values = (f"client{n % 7:03d}", row.clip, f"sid{n}", row.sentence, "", "2", "0",
                      "", "", "", "", locale, "")
            lines.append(("\t".join(values) + "\n").encode("utf-8"))
        (corpus / (split + ".tsv")).write_bytes(b"".join(lines))
    archive = out_dir / f"{release}-{locale}.tar.gz"
    with tarfile.open(str(archive), "w:gz") as tar:
        tar.add(str(stage / release), arcname=release)
    shutil.rmtree(str(stage))
    return archive


_NUMBERS = ("zéro un deux trois quatre cinq six sept huit neuf").split()


def _words(i: int) -> str:
    return " ".join(_NUMBERS[int(d)] for d in str(i))
