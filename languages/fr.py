"""French: Common Voice, with the label cleaning of the commonvoice-fr DeepSpeech model.

A transcript keeps the French letters (accents, ç, œ, ÿ) and the apostrophe;
as in the original pipeline, hyphens become spaces and æ becomes é.  Symbols that are
read aloud become words (€ -> euros); other punctuation separates words.
Labels with digits (their spoken form is ambiguous), a censored word ("*"),
or letters of another script are rejected; accented letters that French does
not use are folded to their base letter (ñ -> n, ß -> ss), as the original
pipeline did for most of them.
"""
import re
import unicodedata
from typing import Optional

from dstrain.languages import _text
from dstrain.pipeline.language import DatasetSpec, Language, ModelMetadata, TextSource

LETTERS = "abcdefghijklmnopqrstuvwxyzàâçéèêëîïôœùûüÿ'"

# Before NFKC: it turns ½ into "1⁄2" (a digit: rejected), º into "o", and the
# acute accent ´ (typed for an apostrophe) into a space and a combining mark.
_BEFORE_NFKC_HINT = re.compile("[½¼¾⅓⅔´°º]")
_BEFORE_NFKC = re.compile(r"\b[nN][°º]|[½¼¾⅓⅔´]")
_BEFORE_NFKC_WORDS = {
    "½": " demi ",
    "¼": " quart ",
    "¾": " trois quarts ",
    "⅓": " tiers ",
    "⅔": " deux tiers ",
    "´": "'",
}

# A cedilla split from its letter ("fran¸cais", as text copied out of PDFs has it): NFKC would make it a space
# and a combining mark, which is dropped, leaving "fran cais".
_BROKEN_CEDILLA = re.compile("\u00b8\\s?([cC])|([cC])\u00b8")

# Only what the word split below does not already do: dashes, quotes and other
# punctuation need no entry, they separate words.
_TABLE = {}  # type: _text.Table
_TABLE.update(_text.combining_marks())
_TABLE.update(_text.chars_to(_text.INVISIBLE + "·", None))  # "étudiant·e·s" is read as one word
_TABLE.update(_text.chars_to("_", " "))
_TABLE.update(_text.chars_to(_text.APOSTROPHES, "'"))
# æ as the original pipeline did ("ex æquo" is said "ex équo"); œ is a letter.
_TABLE.update(_text.latin_fold(LETTERS, {"æ": "é", "ß": "ss", "ø": "o", "ł": "l", "đ": "d", "ð": "d",
                                         "þ": "th", "ħ": "h", "ŧ": "t", "ı": "i", "ĸ": "k", "ŋ": "ng"}))
_TABLE.update(_text.words_table({
    "°": "degrés",
    "€": "euros",
    "$": "dollars",
    "£": "livres",
    "¥": "yens",
    "%": "pour cent",
    "‰": "pour mille",
    "&": "et",
    "§": "paragraphe",
    "+": "plus",
    "±": "plus ou moins",
    "×": "fois",
    "÷": "divisé par",
    "=": "égale",
    "@": "arobase",
}))
_NEEDS_TABLE = _text.any_of(_TABLE)

# A word character that is not a French letter: a digit or another script.
_FOREIGN = re.compile(r"[^\W_" + LETTERS + "]")
# Elision cut from its word by a space or a quote: "l' homme", "qu 'il", "l'« Hôtel »"
# (not the quoted "'n'" of "rock 'n' roll").
_ELISION_GAP = re.compile(r"(?<!')\b([cdjlmnst]|\w*qu)\s*'[^\w']*(?=\w)")
# An apostrophe not inside a word is a quote mark (starts with the literal: fast scan).
_STRAY_APOSTROPHE = re.compile(r"'(?:(?<!\w')|(?!\w))")


def normalize(label: str) -> Optional[str]:
    if "*" in label:  # censored words ("m***e"): the audio does not match
        return None
    if "\u00b8" in label:
        label = _BROKEN_CEDILLA.sub(lambda m: "ç" if (m.group(1) or m.group(2)) == "c" else "Ç", label)
    if _BEFORE_NFKC_HINT.search(label):
        label = _BEFORE_NFKC.sub(lambda m: _BEFORE_NFKC_WORDS.get(m.group(), " numéro "), label)
    label = unicodedata.normalize("NFKC", label).lower()
    if _NEEDS_TABLE.search(label):
        label = label.translate(_TABLE)
    if _FOREIGN.search(label):
        return None
    if "'" in label and _STRAY_APOSTROPHE.search(label):
        label = _STRAY_APOSTROPHE.sub(" ", _ELISION_GAP.sub(r"\1'", label))
    return " ".join(_text.WORD.findall(label)) or None


CASES = (
    ("Bonjour le monde.", "bonjour le monde"),
    ("ÉCOLE Élémentaire de Saint-Ouen", "école élémentaire de saint ouen"),
    ("  plusieurs    espaces\tet\nlignes  ", "plusieurs espaces et lignes"),
    ("M. Dupont (le maire) ; oui ! [rires] : non ? {x}", "m dupont le maire oui rires non x"),
    # rejected: digits (also through NFKC: ², ①, fullwidth), censored, foreign scripts, nothing left
    ("J'ai 3 chats", None),
    ("Le mètre² coûte cher", None),
    ("Un ① entouré", None),
    ("Quel m***e", None),
    ("Il a dit привет", None),
    ("La lettre λ", None),
    ("Il habite à 東京", None),
    ("Il a dit مرحبا", None),
    ("", None),
    ("   \t ", None),
    ("?! … « » -- ' ", None),
    # quotes, including unbalanced ones and apostrophes used as quotes
    ("Il a dit « bonjour", "il a dit bonjour"),
    ("« Oui », dit-il, “non” et \"peut-être\"", "oui dit il non et peut être"),
    ("Il a dit 'non' puis ‘oui’", "il a dit non puis oui"),
    # apostrophe variants, and elision written with a stray space
    ("L’homme, l‘eau, aujourd`hui", "l'homme l'eau aujourd'hui"),
    ("l´école et lʼami", "l'école et l'ami"),
    ("l' homme qu 'il voit jusqu' à", "l'homme qu'il voit jusqu'à"),
    ("Du rock 'n' roll", "du rock n roll"),
    ("C'est l'« Hôtel-Dieu »", "c'est l'hôtel dieu"),
    # dashes and hyphens (U+2011 non-breaking hyphen)
    ("Paris – Lyon — Marseille - Nice", "paris lyon marseille nice"),
    ("peut\u2011être", "peut être"),
    ("Et puis… rien. Attendez...quoi", "et puis rien attendez quoi"),
    # symbols read aloud
    ("Quarante ° à l'ombre", "quarante degrés à l'ombre"),
    ("Cent € ou cent $ ou cent £", "cent euros ou cent dollars ou cent livres"),
    ("Cinquante %", "cinquante pour cent"),
    ("Dupont & Fils", "dupont et fils"),
    ("Le § trois", "le paragraphe trois"),
    ("Un kilo et ½", "un kilo et demi"),
    ("Deux + deux = quatre", "deux plus deux égale quatre"),
    ("Trois × quatre", "trois fois quatre"),
    ("Le n° sept et le Nº huit", "le numéro sept et le numéro huit"),
    # letters: œ kept, æ as é (original), ligatures by NFKC, French accents kept
    ("Le Cœur de Lætitia", "le cœur de létitia"),
    ("La ﬁn du ﬂeuve", "la fin du fleuve"),
    ("Noël à L'Haÿ-les-Roses, capharnaüm, maïs, façade", "noël à l'haÿ les roses capharnaüm maïs façade"),
    # a cedilla split from its c (CCPMF's 20150417_Printemps_Economie_2), before or after it; a lone one is nothing
    ("Le fran¸cais du gar¸ con, FRAN¸CAIS, franc¸ais", "le français du garçon français français"),
    ("Une cédille ¸ seule", "une cédille seule"),
    # foreign Latin letters folded (the original pipeline folded ä, ß, ú...)
    ("Le señor Muñoz à Łódź", "le senor munoz à lodz"),
    ("Die Straße von Müller", "die strasse von müller"),
    ("İstanbul", "istanbul"),
    # Unicode forms: decomposed accents, fullwidth letters, soft hyphen, NBSP, emoji
    ("e\u0301te\u0301", "été"),
    ("Ｐａｒｉｓ", "paris"),
    ("exem\u00adple", "exemple"),
    ("Ça va\u00a0?", "ça va"),
    ("Des étudiant·e·s", "des étudiantes"),
    ("Au revoir 😀", "au revoir"),
    ("mot_clé / autre | fin", "mot clé autre fin"),
)

# The language-model texts of the commonvoice-fr DeepSpeech model (release lm-0.1 of that project).
_LM_RELEASE = "https://github.com/Common-Voice/commonvoice-fr/releases/download/lm-0.1/"
LM_SOURCES = (
    TextSource("wikipedia", _LM_RELEASE + "wiki.txt.xz", None, "commonvoice-fr-lm-0.1-wiki.txt.xz",
               "CC BY-SA 3.0 (French Wikipedia)"),
    TextSource("assemblee_nationale", _LM_RELEASE + "debats-assemblee-nationale.txt.xz", None,
               "commonvoice-fr-lm-0.1-debats-assemblee-nationale.txt.xz",
               "Assemblée nationale open data (data.assemblee-nationale.fr), reuse with attribution"),
)

LANGUAGE = Language(
    code="fr",
    name="French",
    locale="fr-FR",
    normalize=normalize,
    cases=CASES,
    letters=LETTERS,
    datasets=(
        # No release pinned: the one cv-corpus-*-fr.tar.gz placed in sources/ is used, whichever it is.
        DatasetSpec("common_voice", {"locale": "fr"}),
        # Speakers whose records are bogus, from the original pipeline's lingua_libre_skiplist.txt.
        DatasetSpec("lingua_libre", {
            "qid": "Q21", "iso639_3": "fra", "english_name": "French",
            "url": "https://lingualibre.org/datasets/Q21-fra-French.zip",
            "skip": ("Modjou/.*", "Olivier Yao/.*", "Misnograder/.*", "Morielijah/.*", "KrystjanM/.*",
                     "Ngeorges05/.*", "NKUATE/.*", "Poldjko1/.*", "Lepticed7/.*"),
        }),
        # The two books the original pipeline skipped.
        DatasetSpec("m_ailabs", {
            "language": "fr_FR", "url": "https://data.solak.de/data/Training/stt_tts/fr_FR.tgz",
            "skip_books": ("monsieur_lecoq", "les_mysteres_de_paris"),
        }),
        DatasetSpec("openslr57", {"url": "https://www.openslr.org/resources/57/African_Accented_French.tar.gz"}),
        DatasetSpec("trainingspeech", {
            "release": "2019-04-11_fr_FR",
            "url": "https://deepspeech-storage-mirror.s3.fr-par.scw.cloud/2019-04-11_fr_FR.zip",
        }),
        # The ministry's conferences, cut at 4.5 s as the original pipeline's import_ccpmf.sh did.
        DatasetSpec("ccpmf", {"language": "fr", "max_duration": 4.5}),
        # Multilingual LibriSpeech's French: LibriVox audiobooks, about 1,100 hours (1,077
        # train, 10 dev, 10 test), CC BY 4.0; the largest free French corpus.  Its archive is about 10 GB as Opus
        # (about 60 GB as FLAC), so it is downloaded only when asked for: --datasets +mls.
        DatasetSpec("mls", {"language": "french", "format": "opus"}, opt_in=True),
    ),
    alphabet="data",
    lm_sources=LM_SOURCES,
    # As the original pipeline's fr/metadata.sh.
    metadata=ModelMetadata(
        author="DeepSpeech-FR-Team",
        model_name="deepspeech-fr",
        contact_info="https://discourse.mozilla.org/c/voice/fr",
        license="MIT-0",
        language="fr-FR",
        description="A free and re-usable French model for DeepSpeech",
    ),
)
