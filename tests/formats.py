"""Small corpora in the real formats of Lingua Libre, M-AILABS, OpenSLR 57 and TrainingSpeech.

Speech is made by espeak-ng and converted by sox.  Each corpus is a list of
``Clip``s that also says what the importer must do with each one, so tests
assert exactly what is kept, in which split, and why the rest is rejected.
"""
import random
import subprocess
import tarfile
import tempfile
import wave
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import List, NamedTuple, Optional

KEPT = "kept"
#: The split shares the tests use, so a few speakers fill all three splits.
SHARES = (0.5, 0.25, 0.25)


class Clip(NamedTuple):
    #: How rejects.csv names the row (the end of its ``source``).
    key: str
    #: The speaker (the chapter, for TrainingSpeech): every clip of it lands in one split.
    group: str
    #: The transcript the source gives.
    text: str
    #: KEPT, or the reason the importer must give for rejecting it.
    outcome: str
    #: The split it belongs to (with SHARES).
    split: str
    #: Where the audio goes, when the format needs more than ``key`` to say it.
    place: str = ""
    #: The transcript file that lists it (OpenSLR 57), "" for none.
    listing: str = ""
    #: The source's own line for it, when the builder cannot write it from the fields above.
    line: Optional[bytes] = None
    spoken: Optional[str] = None
    #: "speech", "corrupt", "empty", or "none" (no file).
    audio: str = "speech"
    speed: int = 175


def speak(text: str, target: Path, speed: int = 175, rate: Optional[int] = None) -> None:
    """espeak-ng speech, converted by sox to the format of ``target``'s suffix."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(suffix=".wav") as wav:
        subprocess.run(["espeak-ng", "-v", "fr", "-s", str(speed), "-w", wav.name, text], check=True)
        options = ["-r", str(rate), "-c", "1", "-b", "16"] if rate else []
        subprocess.run(["sox", wav.name, *options, str(target)], check=True)


def write_audio(clips: List[Clip], where, rate: Optional[int] = None) -> None:
    """Write each clip's audio at ``where(clip)``, in parallel."""
    def one(clip: Clip) -> None:
        target = where(clip)
        if clip.audio == "speech":
            speak(clip.spoken or clip.text, target, clip.speed, rate)
        elif clip.audio == "corrupt":
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(bytes(random.Random(clip.key).getrandbits(8) for _ in range(3000)))
        elif clip.audio == "empty":
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(b"")

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, clips))


# Lingua Libre: Q21-fra-French/<user>[ (<locutor>)]/<word>[ (<qualifier>)].ogg, stored in a zip.
LINGUA_LIBRE = [
    Clip("Alice/bonjour.ogg", "Alice", "bonjour", KEPT, "train"),
    Clip("Alice/maison.ogg", "Alice", "maison", KEPT, "train"),
    Clip("Bob (Robert)/soleil.ogg", "Bob (Robert)", "soleil", KEPT, "dev"),
    Clip("Bob (Robert)/vers (préposition).ogg", "Bob (Robert)", "vers", KEPT, "dev"),
    Clip("Céline/l’école.ogg", "Céline", "l’école", KEPT, "train"),
    Clip("Céline/42.ogg", "Céline", "42", "invalid_label", "train", spoken="quarante-deux"),
    Clip("Dédé/fenêtre.ogg", "Dédé", "fenêtre", KEPT, "test"),
    Clip("Dédé/rivière.ogg", "Dédé", "rivière", "undecodable_audio", "test", audio="corrupt"),
    Clip("Eve/lune.ogg", "Eve", "lune", KEPT, "dev"),
    Clip("Eve/nuage.ogg", "Eve", "nuage", "empty_audio", "dev", audio="empty"),
    Clip("Eve/montagne.ogg", "Eve", "montagne", "too_long", "dev",
         spoken="une montagne très haute et très lointaine, vraiment", speed=80),
    Clip("Eve/anticonstitutionnellement.ogg", "Eve", "anticonstitutionnellement", "too_short", "dev",
         spoken="a", speed=400),
    # On the French skip list of bogus records.
    Clip("Modjou/chat.ogg", "Modjou", "chat", "skipped", "train"),
]


def build_lingua_libre(out_dir: Path, name: str = "Q21-fra-French") -> Path:
    stage = Path(tempfile.mkdtemp(dir=str(out_dir)))
    write_audio(LINGUA_LIBRE, lambda clip: stage / clip.key)
    archive = out_dir / (name + ".zip")
    # As Lingua Libre's CommonsDownloadTool writes it: stored, no directory entries, a comment.
    with zipfile.ZipFile(str(archive), "w") as zip_file:
        zip_file.comment = f"Archive containing {len(LINGUA_LIBRE)} recordings from Lingua Libre".encode()
        for clip in LINGUA_LIBRE:
            zip_file.write(str(stage / clip.key), f"{name}/{clip.key}")
    return archive


# M-AILABS: fr_FR/by_book/<female|male>/<speaker>/<book>/{metadata.csv,wavs/}, or by_book/mix/<book>/.
M_AILABS = [
    Clip("tour_01_f000001", "ezwa", "Le chat dort sur le canapé.", KEPT, "train", "female/ezwa/le_tour_du_monde"),
    # The normalised column has the number spelled out: it is the one to use.
    Clip("tour_01_f000002", "ezwa", "Il est né en mille huit cent soixante-douze.", KEPT, "train",
         "female/ezwa/le_tour_du_monde",
         line="tour_01_f000002|Il est né en 1872.|Il est né en mille huit cent soixante-douze.".encode()),
    Clip("tour_01_f000003", "ezwa", "Ce fichier manque.", "missing_audio", "train", "female/ezwa/le_tour_du_monde",
         audio="none"),
    Clip("tour_01_f000004", "ezwa", "Deux champs seulement.", "unreadable_row", "train",
         "female/ezwa/le_tour_du_monde", line=b"tour_01_f000004|Deux champs seulement."),
    Clip("contes_01_f000001", "bernard", "La mer est calme ce soir.", KEPT, "test", "male/bernard/contes"),
    Clip("contes_01_f000002", "bernard", "Café crème.", "unreadable_row", "test", "male/bernard/contes",
         line=b"contes_01_f000002|Caf\xe9 cr\xe8me.|Caf\xe9 cr\xe8me."),
    Clip("contes_01_f000003", "bernard", "", "empty_label", "test", "male/bernard/contes",
         line=b"contes_01_f000003|Un texte original.|"),
    Clip("poemes_01_f000001", "yves", "Le vent souffle fort aujourd'hui.", KEPT, "dev", "male/yves/poemes"),
    # A book on the French skip list.
    Clip("lecoq_01_f000001", "gilles_g_le_blanc", "Monsieur Lecoq entra.", "skipped", "train",
         "male/gilles_g_le_blanc/monsieur_lecoq"),
    Clip("lecoq_01_f000002", "gilles_g_le_blanc", "Il regarda la porte.", "skipped", "train",
         "male/gilles_g_le_blanc/monsieur_lecoq"),
    # Read by several people: the book is the speaker.
    Clip("lundi_01_f000001", "mix/contes_du_lundi", "Nous mangeons des pommes.", KEPT, "train",
         "mix/contes_du_lundi"),
    Clip("lundi_01_f000002", "mix/contes_du_lundi", "Le café est chaud.", KEPT, "train", "mix/contes_du_lundi"),
]


def build_m_ailabs(out_dir: Path, language: str = "fr_FR") -> Path:
    stage = Path(tempfile.mkdtemp(dir=str(out_dir)))
    by_book = stage / language / "by_book"
    write_audio(M_AILABS, lambda clip: by_book / clip.place / "wavs" / (clip.key + ".wav"), rate=16000)
    for clip in M_AILABS:
        line = clip.line or f"{clip.key}|{clip.text}|{clip.text}".encode()
        with (by_book / clip.place / "metadata.csv").open("ab") as metadata:
            metadata.write(line + b"\n")
    (by_book / "info.txt").write_text("M-AILABS Speech Dataset, French\n")
    (by_book / "female" / "ezwa" / "info.txt").write_text("Speaker: ezwa\n")
    archive = out_dir / (language + ".tgz")
    with tarfile.open(str(archive), "w:gz") as tar:
        tar.add(str(stage / language), arcname=language)
    return archive


# OpenSLR 57: African_Accented_French/speech/<split>/<subcorpus>/<speaker>/<clip>.wav, transcripts beside.
_YAOUNDE = "transcripts/train/yaounde/fn_text.txt"
_CA16_READ = "transcripts/train/ca16_read/conditioned.txt"
_CA16_CONV = "transcripts/train/ca16_conv/transcripts.txt"
_NIGER = "transcripts/dev/niger_west_african_fr/transcripts.txt"
_DEVTEST = "transcripts/devtest/ca16_read/conditioned.txt"
_TEST = "transcripts/test/ca16/prompts.txt"
OPENSLR57 = [
    # Yaoundé names each clip by its path on the creators' machine.
    Clip("lenovo-spk01-0001.wav", "yaounde/read/spk01", "Bonjour tout le monde.", KEPT, "train",
         "speech/train/yaounde/read/spk01", _YAOUNDE,
         b"/media/ctell/yaounde/read/spk01/lenovo-spk01-0001.wav Bonjour tout le monde."),
    Clip("lenovo-spk01-0001.wav", "yaounde/read/spk01", "Bonjour encore.", "duplicate", "train",
         "speech/train/yaounde/read/spk01", _YAOUNDE,
         b"/media/ctell/yaounde/read/spk01/lenovo-spk01-0001.wav Bonjour encore.", audio="none"),
    Clip("lenovo-spk01-0002.wav", "yaounde/read/spk01", "Une réponse libre.", "no_transcript", "train",
         "speech/train/yaounde/read/spk01"),
    Clip("ca16_read_gab01_s1_0001.wav", "ca16/gab01", "Il fait beau ce matin.", KEPT, "train",
         "speech/train/ca16/gab01", _CA16_READ, b"ca16_read_gab01_s1_0001 Il fait beau ce matin."),
    Clip("ca16_read_gab01_s1_0002.wav", "ca16/gab01", "Ce fichier manque.", "missing_audio", "train",
         "speech/train/ca16/gab01", _CA16_READ, b"ca16_read_gab01_s1_0002 Ce fichier manque.", audio="none"),
    Clip("ca16_read_gab01_s1_0003.wav", "ca16/gab01", "Il a 3 ans.", "invalid_label", "train",
         "speech/train/ca16/gab01", _CA16_READ, b"ca16_read_gab01_s1_0003 Il a 3 ans.", spoken="il a trois ans"),
    # Conversations name the clip after its .tdf transcript.
    Clip("ca16_conv_gab02_c1_0001.wav", "ca16/gab02", "On parle du marché.", KEPT, "train",
         "speech/train/ca16/gab02", _CA16_CONV, "ca16_conv_gab02_c1_0001.tdf On parle du marché.".encode()),
    # gab03 reads in train and in devtest: the devtest clip stays, the train one goes.
    Clip("ca16_read_gab03_s1_0001.wav", "ca16/gab03", "La route est longue.", "speaker_overlap", "train",
         "speech/train/ca16/gab03", _CA16_READ, b"ca16_read_gab03_s1_0001 La route est longue."),
    Clip("ca16_read_gab03_s2_0001.wav", "ca16/gab03", "Le pont est fermé.", KEPT, "dev",
         "speech/devtest/ca16/gab03", _DEVTEST, "ca16_read_gab03_s2_0001 Le pont est fermé.".encode()),
    Clip("niger_ne01_0001.wav", "niger_west_african_fr/ne01", "La rivière coule doucement.", KEPT, "dev",
         "speech/dev/niger_west_african_fr/ne01", _NIGER,
         "niger_west_african_fr/ne01/niger_ne01_0001.wav La rivière coule doucement.".encode()),
    Clip("ca16_test_gab04_0001.wav", "ca16/ca16_test_gab04", "Le marché ouvre tôt.", KEPT, "test",
         "speech/test/ca16/ca16_test_gab04", _TEST, "ca16_test_gab04_0001 Le marché ouvre tôt.".encode()),
    Clip("ca16_test_gab04_0002.wav", "ca16/ca16_test_gab04", "Café crème.", "unreadable_row", "test",
         "speech/test/ca16/ca16_test_gab04", _TEST, b"ca16_test_gab04_0002 Caf\xe9 cr\xe8me."),
]


def build_openslr57(out_dir: Path) -> Path:
    stage = Path(tempfile.mkdtemp(dir=str(out_dir)))
    corpus = stage / "African_Accented_French"
    write_audio(OPENSLR57, lambda clip: corpus / clip.place / clip.key, rate=16000)
    for name in (_YAOUNDE, _CA16_READ, _CA16_CONV, _NIGER, _DEVTEST, _TEST):
        lines = [clip.line + b"\n" for clip in OPENSLR57 if clip.listing == name]
        (corpus / name).parent.mkdir(parents=True, exist_ok=True)
        (corpus / name).write_bytes(b"".join(lines))
    # Niger's second listing, which the importer leaves alone (Kaldi's recipe reads the .txt too).
    (corpus / "speech/dev/niger_west_african_fr/niger_wav_file_name_transcript.tsv").write_text(
        "niger_ne01_0001.wav\tLa rivière coule doucement.\n")
    archive = out_dir / "African_Accented_French.tar.gz"
    with tarfile.open(str(archive), "w:gz") as tar:
        tar.add(str(corpus), arcname="African_Accented_French")
    return archive


# TrainingSpeech: <source>_<NNNN>.wav at the root of a zip, and data.csv (path,duration,text).
TRAININGSPEECH = [
    Clip("LeComteDeMonteCristoT1Chap1_0001.wav", "LeComteDeMonteCristoT1Chap1",
         "Le vingt-quatre février, la vigie signala le trois-mâts.", KEPT, "dev"),
    Clip("LeComteDeMonteCristoT1Chap1_0002.wav", "LeComteDeMonteCristoT1Chap1", "Oui, monsieur, dit-il.", KEPT, "dev"),
    Clip("LeComteDeMonteCristoT1Chap2_0001.wav", "LeComteDeMonteCristoT1Chap2", "Le navire entra dans le port.",
         KEPT, "train"),
    Clip("LeComteDeMonteCristoT1Chap2_0002.wav", "LeComteDeMonteCristoT1Chap2", "En 1815.", "invalid_label", "train",
         spoken="en mille huit cent quinze"),
    Clip("MadameBovaryChap2_0001.wav", "MadameBovaryChap2", "Nous étions à l’étude.", KEPT, "test"),
    Clip("MadameBovaryChap2_0002.wav", "MadameBovaryChap2", "Le proviseur entra.", "missing_audio", "test",
         audio="none"),
    Clip("LesMiserablesT1Chap1_0001.wav", "LesMiserablesT1Chap1", "", "empty_label", "train", spoken="silence"),
    Clip("LesMiserablesT1Chap1_0002.wav", "LesMiserablesT1Chap1", "Café crème.", "unreadable_row", "train",
         line=b"LesMiserablesT1Chap1_0002.wav,1.2,Caf\xe9 cr\xe8me."),
    Clip("LesMiserablesT1Chap1_0003.wav", "LesMiserablesT1Chap1", "Un champ manque.", "unreadable_row", "train",
         line=b"LesMiserablesT1Chap1_0003.wav"),
]


def build_trainingspeech(out_dir: Path, release: str = "2019-04-11_fr_FR") -> Path:
    stage = Path(tempfile.mkdtemp(dir=str(out_dir)))
    write_audio(TRAININGSPEECH, lambda clip: stage / clip.key, rate=16000)
    table = [b"path,duration,text"]
    for clip in TRAININGSPEECH:
        seconds = 1.0
        if (stage / clip.key).exists():
            with wave.open(str(stage / clip.key)) as wav:
                seconds = wav.getnframes() / wav.getframerate()
        quoted = f'"{clip.text}"' if "," in clip.text else clip.text
        table.append(clip.line or f"{clip.key},{seconds:.3f},{quoted}".encode())
    archive = out_dir / (release + ".zip")
    # As TrainingSpeech's release command writes it: deflated clips at the root, then data.csv.
    with zipfile.ZipFile(str(archive), "w", zipfile.ZIP_DEFLATED) as zip_file:
        for clip in TRAININGSPEECH:
            if (stage / clip.key).exists():
                zip_file.write(str(stage / clip.key), clip.key)
        zip_file.writestr("data.csv", b"\r\n".join(table) + b"\r\n")
    return archive
