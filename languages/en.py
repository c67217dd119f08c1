"""English: Common Voice, cleaned to the alphabet of DeepSpeech's released English model.

A transcript holds only a-z, the apostrophe and spaces.  Accented Latin letters
are folded to ASCII (café -> cafe), symbols read aloud become words
(% -> percent), other punctuation separates words.  Labels with digits (their
spoken form is ambiguous), a censored word ("*") or letters of another script
are rejected.
"""
import re
import unicodedata
from typing import Optional

from dstrain.languages import _text
from dstrain.pipeline.language import ENGLISH_LETTERS, DatasetSpec, Language, ModelMetadata

# Before NFKD: it turns ½ into "1⁄2" (a digit: rejected), and the acute
# accent ´ (typed for an apostrophe) into a space and a combining mark.
_BEFORE_NFKD = re.compile("[½¼¾⅓⅔´]")
_BEFORE_NFKD_WORDS = {
    "½": " half ",
    "¼": " quarter ",
    "¾": " three quarters ",
    "⅓": " third ",
    "⅔": " two thirds ",
    "´": "'",
}

# Only what the word split below does not already do: dashes, quotes and other
# punctuation need no entry, they separate words.
_TABLE = {}  # type: _text.Table
_TABLE.update(_text.combining_marks())  # NFKD leaves accents as combining marks: café -> cafe
_TABLE.update(_text.chars_to(_text.INVISIBLE, None))
_TABLE.update(_text.chars_to("_", " "))
_TABLE.update(_text.chars_to(_text.APOSTROPHES, "'"))
# Letters NFKD does not take apart.
_TABLE.update(str.maketrans({"ß": "ss", "æ": "ae", "œ": "oe", "ø": "o", "ł": "l", "đ": "d", "ð": "d",
                             "þ": "th", "ħ": "h", "ŧ": "t", "ı": "i", "ĸ": "k", "ŋ": "ng"}))
_TABLE.update(_text.words_table({
    "°": "degrees",
    "€": "euros",
    "$": "dollars",
    "£": "pounds",
    "¥": "yen",
    "%": "percent",
    "&": "and",
    "§": "section",
    "+": "plus",
    "±": "plus or minus",
    "×": "times",
    "÷": "divided by",
    "=": "equals",
    "@": "at",
}))
_NEEDS_TABLE = _text.any_of(_TABLE)

# A word character that is not an English letter: a digit or another script.
_FOREIGN = re.compile(r"[^\W_" + ENGLISH_LETTERS + "]")
# An apostrophe not inside a word is a quote mark, except in the plural possessive
# "dogs'" (starts with the literal: fast scan).
_STRAY_APOSTROPHE = re.compile(r"'(?:(?<!\w')|(?<!s')(?!\w))")


def normalize(label: str) -> Optional[str]:
    if "*" in label:  # censored words ("f**k"): the audio does not match
        return None
    if _BEFORE_NFKD.search(label):
        label = _BEFORE_NFKD.sub(lambda m: _BEFORE_NFKD_WORDS[m.group()], label)
    if not label.isascii():  # NFKD: NFKC's compatibility mapping, with accents split off
        label = unicodedata.normalize("NFKD", label)
    label = label.lower()
    if _NEEDS_TABLE.search(label):
        label = label.translate(_TABLE)
    if _FOREIGN.search(label):
        return None
    if "'" in label:
        label = _STRAY_APOSTROPHE.sub(" ", label)
    return " ".join(_text.WORD.findall(label)) or None


CASES = (
    ("Hello, world.", "hello world"),
    ("The QUICK Brown fox", "the quick brown fox"),
    ("  lots    of\tspace\n here  ", "lots of space here"),
    ("Well; (maybe) [not]: yes! no? ok...", "well maybe not yes no ok"),
    # rejected: digits (also through NFKD: ², fullwidth), censored, foreign scripts, nothing left
    ("I have 3 cats", None),
    ("Ten m² of floor", None),
    ("What the f**k", None),
    ("He said привет", None),
    ("The letter λ", None),
    ("Welcome to 東京", None),
    ("", None),
    (" \t ", None),
    ("?! … -- ' \"", None),
    # apostrophes: variants kept inside words, quote marks dropped, plural possessive kept
    ("Don’t ‘quote’ me, it`s John´s", "don't quote me it's john's"),
    ("She said 'no' to the dogs' owner", "she said no to the dogs' owner"),
    ("\"Unbalanced quote", "unbalanced quote"),
    # dashes, ellipsis
    ("Well-known – really — well\u2011liked", "well known really well liked"),
    ("Wait… what", "wait what"),
    # symbols read aloud
    ("Fifty % & more", "fifty percent and more"),
    ("Ten $ or ten € or ten £", "ten dollars or ten euros or ten pounds"),
    ("Two + two = four", "two plus two equals four"),
    ("Forty ° outside", "forty degrees outside"),
    ("One and ½", "one and half"),
    ("See § five", "see section five"),
    # accented and special Latin letters folded to ASCII, ligatures split by NFKD
    ("Café naïve Zoë résumé", "cafe naive zoe resume"),
    ("Straße Ærøskøbing Łódź Œuvre", "strasse aeroskobing lodz oeuvre"),
    ("The ﬁnal ﬂight", "the final flight"),
    ("e\u0301clair", "eclair"),
    ("Ｆｕｌｌ ｗｉｄｔｈ", "full width"),
    ("soft\u00adware", "software"),
    ("Bye 😀", "bye"),
)

LANGUAGE = Language(
    code="en",
    name="English",
    locale="en-US",
    normalize=normalize,
    cases=CASES,
    letters=ENGLISH_LETTERS,
    datasets=(DatasetSpec("common_voice", {"locale": "en"}),),  # the release: that of the archive in sources/
    alphabet="english",
    metadata=ModelMetadata(
        model_name="deepspeech-en",
        language="en-US",
        description="An English model for DeepSpeech, trained on Common Voice with dstrain",
    ),
)
