"""German: Common Voice, M-AILABS and Multilingual LibriSpeech.

A transcript holds a-z, ä, ö, ü and ß.  Other accented Latin letters are
folded to the letter a German reader says (é -> e, æ -> ä, œ -> ö, as the
deepspeech-german pipeline did), but ß is kept, not written ss.  The
apostrophe is dropped and the word joined ("geht's" -> "gehts", a spelling
the Duden allows too): it is not heard, and keeping it would give one sound
two spellings.  Symbols that are read aloud become words (€ -> euro);
dashes, quotes („ “ ‚ ‘ » «) and other punctuation separate words.  Labels
with digits (their spoken form is ambiguous), a censored word ("*") or
letters of another script are rejected.
"""
import re
import unicodedata
from typing import Optional

from dstrain.languages import _text
from dstrain.pipeline.language import DatasetSpec, Language, ModelMetadata, TextSource

LETTERS = "abcdefghijklmnopqrstuvwxyzäöüß"

# Only what the word split below does not already do: dashes, quotes and other
# punctuation need no entry, they separate words.
_TABLE = {}  # type: _text.Table
_TABLE.update(_text.combining_marks())
_TABLE.update(_text.chars_to(_text.INVISIBLE, None))
_TABLE.update(_text.chars_to("_", " "))
# The apostrophe and what is typed for one, ´ included (NFKC makes it a space and a combining mark).
_TABLE.update(_text.chars_to(_text.APOSTROPHES + "'", None))
_TABLE.update(_text.latin_fold(LETTERS, {"æ": "ä", "œ": "ö", "ø": "ö", "ł": "l", "đ": "d", "ð": "d", "þ": "th",
                                         "ħ": "h", "ŧ": "t", "ı": "i", "ĸ": "k", "ŋ": "ng"}))
_TABLE.update(_text.words_table({
    "°": "grad",
    "€": "euro",
    "$": "dollar",
    "£": "pfund",
    "¥": "yen",
    "%": "prozent",
    "‰": "promille",
    "&": "und",
    "§": "paragraph",
    "+": "plus",
    "±": "plus minus",
    "×": "mal",
    "÷": "geteilt durch",
    "=": "gleich",
    "@": "at",
}))
_NEEDS_TABLE = _text.any_of(_TABLE)

# A word character that is not a German letter: a digit or another script.
_FOREIGN = re.compile(r"[^\W_" + LETTERS + "]")


def normalize(label: str) -> Optional[str]:
    if "*" in label:  # censored words: the audio does not match
        return None
    if "´" in label:  # before NFKC, which makes it a space and a combining mark
        label = label.replace("´", "'")
    label = unicodedata.normalize("NFKC", label).lower()
    if _NEEDS_TABLE.search(label):
        label = label.translate(_TABLE)
    if _FOREIGN.search(label):
        return None
    return " ".join(_text.WORD.findall(label)) or None


CASES = (
    ("Guten Morgen, Welt.", "guten morgen welt"),
    ("DER Große Bär schläft", "der große bär schläft"),
    ("Äpfel, Öl und Übermut", "äpfel öl und übermut"),
    ("  viele    Leerzeichen\tund\nZeilen  ", "viele leerzeichen und zeilen"),
    ("Ja; (vielleicht) [nein]: gut! Wirklich? Na...", "ja vielleicht nein gut wirklich na"),
    # ß kept, also from the capital ẞ; ss stays ss
    ("Die Straße und die STRASSE", "die straße und die strasse"),
    ("GROẞ", "groß"),
    # rejected: digits (also through NFKC: ², ½, fullwidth), censored, foreign scripts, nothing left
    ("Ich habe 3 Katzen", None),
    ("Zehn m² Fläche", None),
    ("Ein ½ Liter", None),
    ("Ｎｒ ４", None),
    ("So ein Sch***", None),
    ("Er sagte привет", None),
    ("Der Buchstabe λ", None),
    ("Willkommen in 東京", None),
    ("", None),
    ("  \t ", None),
    ("?! … „ “ -- ' ", None),
    # German quotes, including unbalanced ones, and guillemets both ways
    ("Er sagte: „Hallo“ und ging.", "er sagte hallo und ging"),
    ("Sie rief ‚Halt‘ und »Stopp« und «weiter»", "sie rief halt und stopp und weiter"),
    ("„Unausgeglichen", "unausgeglichen"),
    # apostrophes of any kind are dropped, joining the word
    ("Wie geht's? Geht’s gut? Hab' ich!", "wie gehts gehts gut hab ich"),
    ("So ´n Quatsch und Andrea`s Laden", "so n quatsch und andreas laden"),
    # dashes and hyphens (U+2011 non-breaking hyphen)
    ("Baden-Württemberg – Bayern — Berlin", "baden württemberg bayern berlin"),
    ("E\u2011Mail", "e mail"),
    # symbols read aloud
    ("Fünfzig % mehr", "fünfzig prozent mehr"),
    ("Müller & Söhne", "müller und söhne"),
    ("Zehn € oder zehn $ oder zehn £", "zehn euro oder zehn dollar oder zehn pfund"),
    ("Zwei + zwei = vier", "zwei plus zwei gleich vier"),
    ("Dreißig ° im Schatten", "dreißig grad im schatten"),
    ("Laut § drei", "laut paragraph drei"),
    ("Drei × vier", "drei mal vier"),
    # foreign Latin letters folded, ligatures by NFKC
    ("Café, Señor, façade, Łódź", "cafe senor facade lodz"),
    ("Ærø und Œuvre und Øre", "ärö und öuvre und öre"),
    ("Die ﬁnale ﬂut", "die finale flut"),
    # Unicode forms: decomposed umlauts, fullwidth letters, soft hyphen, NBSP, emoji
    ("Mu\u0308ller", "müller"),
    ("Ｂｅｒｌｉｎ", "berlin"),
    ("Silben\u00adtrennung", "silbentrennung"),
    ("Na\u00a0ja", "na ja"),
    ("Tschüss 😀", "tschüss"),
    ("Schlüssel_wort / anderes | Ende", "schlüssel wort anderes ende"),
)

# The sentences the German DeepSpeech models of Universität Hamburg and deepspeech-german were built from.
LM_SOURCES = (
    TextSource("tuda_sentences",
               "http://ltdata1.informatik.uni-hamburg.de/kaldi_tuda_de/German_sentences_8mil_filtered_maryfied.txt.gz",
               None, "German_sentences_8mil_filtered_maryfied.txt.gz",
               "Universität Hamburg: German Wikipedia (CC BY-SA), Europarl and crawled direct speech"),
)

LANGUAGE = Language(
    code="de",
    name="German",
    locale="de-DE",
    normalize=normalize,
    cases=CASES,
    letters=LETTERS,
    datasets=(
        DatasetSpec("common_voice", {"locale": "de"}),  # the release: that of the archive in sources/
        # No book is left out: the German community pipelines skipped none.
        DatasetSpec("m_ailabs", {"language": "de_DE", "url": "https://data.solak.de/data/Training/stt_tts/de_DE.tgz"}),
        DatasetSpec("mls", {"language": "german", "format": "opus"}),
    ),
    alphabet="data",
    lm_sources=LM_SOURCES,
    metadata=ModelMetadata(
        description="A DeepSpeech 0.9.3 model for German, trained with dstrain on Common Voice, M-AILABS and "
                    "Multilingual LibriSpeech.",
    ),
)
