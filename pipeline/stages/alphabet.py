"""alphabet: the characters the model will output, in DeepSpeech's alphabet.txt format."""
import logging
from collections import Counter

from dstrain.pipeline.atomic import write_text
from dstrain.pipeline.errors import StageError
from dstrain.pipeline.formats.alphabet import alphabet_text
from dstrain.pipeline.formats.deepspeech_csv import read_samples
from dstrain.pipeline.language import ENGLISH_LETTERS
from dstrain.pipeline.paths import SPLITS

log = logging.getLogger("dstrain")
RARE = 5


def inputs(ctx) -> dict:
    return {"english_compatible": ctx.config.settings.english_compatible}


def run(ctx) -> dict:
    seen: Counter = Counter()
    for split in SPLITS:
        for sample in read_samples(ctx.paths.clean_set(split).listing):
            seen.update(sample.transcript)
    if ctx.config.settings.english_compatible:
        characters = [" "] + list(ENGLISH_LETTERS)
        unused = [c for c in characters if not seen[c]]
        if unused:
            log.info("English alphabet: %d characters never occur in the data: %s", len(unused), "".join(unused))
    else:
        if not seen:
            raise StageError("the cleaned transcripts are empty; nothing to build an alphabet from")
        characters = [" "] + sorted(c for c in seen if c != " ")
    rare = sorted(c for c in characters if 0 < seen[c] < RARE)
    if rare:
        log.warning("characters seen fewer than %d times (the model can hardly learn them): %s",
                    RARE, " ".join(repr(c) for c in rare))
    text = alphabet_text(characters)
    write_text(ctx.paths.alphabet, text)
    log.info("alphabet: %d labels -> %s", len(characters), ctx.paths.alphabet)
    return {"counts": {"labels": len(characters)}, "outputs": text}
