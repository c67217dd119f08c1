"""Numbers written with digits, spelled out in words by num2words, for corpora whose transcripts keep digits.

Only a number that stands alone is spelled: "3 000 €", "2,5 %", "en 2019."
become words.  One glued to letters or to other symbols ("3D", "1er",
"14:30", "2019/2020", "70-80", "1.000.000") is left alone, because how it is
said depends on what it means; the language's normaliser then rejects the
label for its digits, which is better than a transcript the audio does not
match.  A corpus that knows what its times and ranges mean says so first
(ccpmf.tidy).  Spaces group thousands ("50 000") and a comma or a dot marks
decimals, as French writes them.
"""
import re

#: "50 000" and "1 234 567" (with ordinary, no-break or narrow no-break spaces): one number.
_THOUSANDS = re.compile(r"(?<![\d.,])\d{1,3}(?:[ \u00a0\u202f]\d{3})+(?![\d]|[.,]\d)")
#: A number neither glued to a word nor part of a time, a range, a date or a longer number.
_NUMBER = re.compile(r"(?<![\w.,:/-])(\d+)(?:[.,](\d+))?(?![\w:/-]|[.,]\d)")


def supported(language: str) -> bool:
    from num2words import CONVERTER_CLASSES

    return language in CONVERTER_CLASSES


def spell_numbers(text: str, language: str) -> str:
    if not any(c.isdigit() for c in text):
        return text
    from num2words import CONVERTER_CLASSES, num2words

    point = getattr(CONVERTER_CLASSES[language], "pointword", None)

    def words(match) -> str:
        whole, fraction = match.group(1), match.group(2)
        spoken = num2words(int(whole), lang=language)
        if fraction is None:
            return spoken
        if not isinstance(point, str):  # no single word for the decimal mark: leave the digits
            return match.group()
        # Said as a whole number after the mark ("2,50": deux virgule cinquante), leading zeros one by one.
        significant = fraction.lstrip("0")
        zeros = [num2words(0, lang=language)] * (len(fraction) - len(significant))
        return " ".join([spoken, point] + zeros + ([num2words(int(significant), lang=language)] if significant else []))

    text = _THOUSANDS.sub(lambda m: re.sub(r"\s", "", m.group()), text)
    return _NUMBER.sub(words, text)
