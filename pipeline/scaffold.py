"""`dstrain new-language`: a commented starting point for a new language module."""
import re
import shlex
from pathlib import Path
from string import Template
from typing import Optional, Tuple

from dstrain.pipeline.atomic import write_text
from dstrain.pipeline.errors import ConfigError
from dstrain.pipeline.paths import system_dir_problem
from dstrain.pipeline.registry import available_languages, builtin_languages_dir

TEMPLATE = Template('''\
"""$name for dstrain.

Answer the questions in the comments, run `dstrain check --language $code --to alphabet`
until its test cases pass, then train.  See docs/adding-a-language.md.
"""
import re
import unicodedata
from typing import Optional

from dstrain.pipeline.language import DatasetSpec, Language

# QUESTION 1: which letters does a clean $name transcript use?
# List every lower-case letter, with its accents, plus the apostrophe if words
# contain one.  The model can only ever write these characters (and spaces).
LETTERS = "$letters"

# QUESTION 2: which symbols are read aloud, and how?  ("%" is said "percent"...)
SPOKEN_SYMBOLS = {
    # "%": " percent ",
    # "&": " and ",
}

_SYMBOLS = re.compile("|".join(re.escape(s) for s in SPOKEN_SYMBOLS) or "(?!)")
_DIGITS = re.compile(r"\\d")
_NOT_A_LETTER = re.compile("[^" + re.escape(LETTERS) + "]+")


def normalize(label: str) -> Optional[str]:
    """The sentence as the model should learn it, or None to reject it."""
    text = unicodedata.normalize("NFKC", label)
    # QUESTION 3: how are numbers said?  Rejecting sentences with digits is
    # the safe default: "1984" can be a year or a number.
    if _DIGITS.search(text):
        return None
    text = _SYMBOLS.sub(lambda m: SPOKEN_SYMBOLS[m.group(0)], text).lower()
    # QUESTION 4: are letters of other scripts a reason to reject the sentence?
    # Here anything that is not in LETTERS separates words.
    text = " ".join(_NOT_A_LETTER.sub(" ", text).split())
    return text or None


# QUESTION 5: examples of real sentences and what they must become.  They run
# before every pipeline run; add one for every rule above.
CASES = (
    ("", None),
    ("123", None),
    ("?!", None),
    # ("A real sentence, with punctuation!", "a real sentence with punctuation"),
)

LANGUAGE = Language(
    code="$code",
    name="$name",
    locale="$locale",
    normalize=normalize,
    cases=CASES,
    letters=LETTERS,
    # QUESTION 6: which corpora?  Common Voice's locale code for $name (the release is
    # that of the archive in sources/); `dstrain languages` lists what other languages use.
    datasets=(
        DatasetSpec("common_voice", {"locale": "$cv_locale"}),
    ),
    # QUESTION 7: "data" builds the alphabet from your transcripts; "english"
    # transliterates to ASCII for transfer learning from the English model.
    alphabet="data",
    # QUESTION 8 (optional): settings that differ for $name, for example a smaller
    # model while there are few hours of speech (`dstrain config` lists them all).
    # defaults={"train.n_hidden": 1024},
)
''')



def language_name(locale: str) -> Optional[str]:
    """The English name of the language of a locale tag (``br-FR`` -> Breton), from Unicode's CLDR."""
    from babel import Locale, UnknownLocaleError

    try:
        return Locale.parse(locale.replace("-", "_")).get_language_name("en")
    except (ValueError, UnknownLocaleError):  # not a tag, or one CLDR does not know
        return None


def new_language(code: str, name: Optional[str], locale: Optional[str], letters: str,
                 directory: Optional[Path] = None) -> Tuple[Path, str]:
    """Write ``directory/code.py`` (default: the built-in languages' folder) from the template; return its path
    and what to tell the user: the name taken from the locale when not given, and the command to check it."""
    if not re.match(r"^[a-z]{2,3}(_[a-z0-9]+)?$", code):
        raise ConfigError(f"language code {code!r}: use an ISO 639 code such as 'br' or 'eo'")
    known = available_languages()
    if code in known:
        raise ConfigError(f"language {code!r} exists already ({known[code].origin}); pick another code")
    locale = locale or code
    builtin = Path(builtin_languages_dir())
    directory = Path(directory or builtin)
    refused = system_dir_problem(directory) if directory != builtin else None
    if refused:
        raise ConfigError(f"--dir {directory}: {refused}; write the language in a folder of your own, such as "
                          "~/dstrain-languages")
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"--dir {directory}: that is a file, not a folder")
    target = directory / (code + ".py")
    if target.exists():
        raise ConfigError(f"{target} already exists; edit it, or remove it first")
    notes = []
    if not name:
        name = language_name(locale) or language_name(code)
        notes.append(f"its name, from the locale {locale!r}: {name}" if name else
                     f"no language has the locale {locale!r} in Unicode's list, so its name is {code!r} for now: "
                     "set name= in the file (or start again with --name)")
        name = name or code
    write_text(target, TEMPLATE.substitute(
        code=code, name=name, locale=locale, letters=letters.replace("\\", "\\\\").replace('"', '\\"'),
        cv_locale=code))
    # Its test cases and the data side only: a new language is written long before a trainer is installed.
    check = f"dstrain check --language {code} --to alphabet"
    if directory.resolve() != builtin.resolve():
        # dstrain finds languages among its own, in plugins, and in the folders language_dirs names.
        check = f"DSTRAIN_LANGUAGE_DIRS={shlex.quote(str(directory.resolve()))} {check}"
    return target, "\n".join([f"wrote {target}", *notes, f"next: answer its QUESTIONs, then `{check}`"])
