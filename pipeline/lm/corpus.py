"""The language-model corpus: every line of every text normalised like the labels, streamed on every core.

Texts are read in blocks of whole lines; worker processes normalise the blocks
and the results are written in input order, so the corpus is the same whatever
the number of workers.  At most a few blocks per worker are in flight, so memory
stays flat however large the input: what grows is the word counts, with the
vocabulary (not the corpus) size.
"""
import bz2
import gzip
import heapq
import lzma
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, FrozenSet, Iterable, Iterator, List, Optional, Set, Tuple

from tqdm import tqdm

from dstrain.pipeline.atomic import temporary_path
from dstrain.pipeline.errors import StageError
from dstrain.pipeline.workers import ordered

BLOCK_BYTES = 4 << 20
#: Blocks queued per worker: enough to keep every core busy, few enough to keep memory flat.
IN_FLIGHT_PER_WORKER = 3
#: KenLM refuses its own markers inside the text; some dumps carry them as markup.
KENLM_MARKERS = (b"<s>", b"</s>", b"<unk>")
STAT_NAMES = ("lines", "kept", "blank", "rejected", "outside_alphabet", "held_out", "undecodable", "too_long")
#: Longer than any sentence or paragraph of a text source: a longer "line" (gigabytes without a newline,
#: inflated from a few MB of .xz) is cut to this many bytes plus one as it streams, never held whole, and
#: counted ``too_long``.
MAX_LINE = 1 << 20
_OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


@dataclass(frozen=True)
class Rules:
    """What happens to each line; sent once to every worker."""

    normalize: Callable[[str], Optional[str]]
    #: Applied after ``normalize`` (the English-compatible transliteration), or None.
    transform: Optional[Callable[[str], str]] = None
    #: Every character a kept line may hold (the alphabet); None keeps any.
    allowed: Optional[str] = None
    #: Normalised dev/test sentences, never written to the corpus.
    held_out: FrozenSet[str] = frozenset()
    #: Bytes output mode: one "word" per character, as DeepSpeech's UTF-8 scorers expect.
    codepoints: bool = False


@dataclass
class Summary:
    """What the corpus holds and what was left out, per input."""

    per_source: Dict[str, Counter]
    #: UTF-8 word -> occurrences.
    words: Counter
    #: The distinct dev/test sentences that were found (and dropped).
    held_out_found: Set[str]

    def total(self, name: str) -> int:
        return sum(counts[name] for counts in self.per_source.values())


def file_blocks(path: Path, progress: Optional[tqdm] = None, block_bytes: int = BLOCK_BYTES) -> Iterator[bytes]:
    """Blocks of whole lines; ``progress`` advances by the bytes read from disk (compressed or not).  A line
    longer than ``MAX_LINE`` is cut to ``MAX_LINE + 1`` bytes as it streams (``process_block`` leaves it out)."""
    with open(str(path), "rb") as raw:
        opener = _OPENERS.get(Path(path).suffix)
        stream = opener(raw, "rb") if opener else raw
        with stream:
            rest, done, skipping = b"", 0, False
            while True:
                data = stream.read(block_bytes)
                if progress is not None:
                    progress.update(raw.tell() - done)
                    done = raw.tell()
                if not data:
                    break
                if skipping:  # the rest of a line already cut
                    end = data.find(b"\n")
                    if end < 0:
                        continue
                    data, skipping = data[end:], False  # its newline ends the cut line
                cut = data.rfind(b"\n") + 1
                if cut:
                    yield rest + data[:cut]
                    rest = data[cut:]
                else:
                    rest += data
                if len(rest) > MAX_LINE:
                    rest, skipping = rest[:MAX_LINE + 1], True
            if rest:
                yield rest


def line_blocks(lines: Iterable[str], block_bytes: int = BLOCK_BYTES) -> Iterator[bytes]:
    """Blocks from lines already in memory, e.g. the training transcripts."""
    batch: List[bytes] = []
    size = 0
    for line in lines:
        encoded = line.encode("utf-8")
        batch.append(encoded)
        size += len(encoded) + 1
        if size >= block_bytes:
            yield b"\n".join(batch) + b"\n"
            batch, size = [], 0
    if batch:
        yield b"\n".join(batch) + b"\n"


_rules: Optional[Rules] = None
_outside: Optional["re.Pattern[str]"] = None


def _init_worker(rules: Rules) -> None:
    global _rules, _outside
    _rules = rules
    # The newline is allowed: the pattern scans whole blocks of lines.
    _outside = re.compile("[^\n" + re.escape(rules.allowed) + "]") if rules.allowed is not None else None


def _decode(block: bytes, counts: Counter) -> List[str]:
    """The block's lines; those longer than ``MAX_LINE`` bytes and those that are not UTF-8 are counted and
    left out."""
    if len(block) > MAX_LINE:
        raws = block.split(b"\n")
        short = [raw for raw in raws if len(raw) <= MAX_LINE]
        if len(short) < len(raws):
            counts["too_long"] += len(raws) - len(short)
            block = b"\n".join(short)
    try:
        return block.decode("utf-8").split("\n")
    except UnicodeDecodeError:  # rare: find the bad lines, keep the others
        lines = []
        for raw in block.split(b"\n"):
            try:
                lines.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                counts["undecodable"] += 1
        return lines


def process_block(block: bytes) -> Tuple[bytes, Counter, Counter, Set[str]]:
    """Normalise one block: (corpus text, its words' counts, line counts, dev/test sentences met)."""
    rules = _rules
    counts: Counter = Counter()
    if b"<" in block:
        for marker in KENLM_MARKERS:
            block = block.replace(marker, b" ")
    lines = _decode(block, counts)
    if lines and lines[-1] == "":
        lines.pop()  # the block's final newline
    normalize, transform, held_out = rules.normalize, rules.transform, rules.held_out
    kept: List[str] = []
    met: Set[str] = set()
    blank = rejected = excluded = 0
    for line in lines:
        if not line or line.isspace():
            blank += 1
            continue
        try:
            text = normalize(line)
        except Exception as exc:  # name the line: it is somewhere in gigabytes of text
            raise StageError(f"the language's normalize raised {type(exc).__name__}: {exc} on {line!r}") from None
        if text and transform is not None:
            text = transform(text)
        if not text:
            rejected += 1
        elif text in held_out:
            excluded += 1
            met.add(text)
        else:
            kept.append(text)
    out = "\n".join(kept)
    off_alphabet = 0
    if _outside is not None and _outside.search(out):  # one scan of the block; line by line only if needed
        inside = [text for text in kept if not _outside.search(text)]
        off_alphabet = len(kept) - len(inside)
        kept = inside
        out = "\n".join(kept)
    if rules.codepoints:
        out = "\n".join(" ".join(text.replace(" ", "")) for text in kept)
    counts.update(lines=len(lines) + counts["undecodable"] + counts["too_long"], kept=len(kept), blank=blank,
                  rejected=rejected, outside_alphabet=off_alphabet, held_out=excluded)
    text = (out + "\n").encode("utf-8") if kept else b""
    return text, Counter(text.split()), counts, met  # bytes words: cheaper to make and count than str


def _named_block(job: Tuple[str, bytes]) -> Tuple[str, Tuple[bytes, Counter, Counter, Set[str]]]:
    return job[0], process_block(job[1])


def build(inputs: Iterable[Tuple[str, Iterable[bytes]]], corpus: Path, rules: Rules, workers: int) -> Summary:
    """Write the normalised corpus to ``corpus`` (atomically) and count its words."""
    summary = Summary({}, Counter(), set())

    def blocks():
        for name, source in inputs:
            summary.per_source.setdefault(name, Counter())
            for block in source:
                yield name, block

    with temporary_path(corpus) as tmp, tmp.open("wb") as out:
        for name, (text, words, counts, met) in ordered(_named_block, blocks(), workers,
                                                        window=IN_FLIGHT_PER_WORKER * workers,
                                                        initializer=_init_worker, initargs=(rules,)):
            out.write(text)
            summary.words.update(words)
            summary.per_source.setdefault(name, Counter()).update(counts)
            summary.held_out_found.update(met)
    return summary


def top_words(words: Counter, k: int) -> List[Tuple[str, int]]:
    """The k most frequent words with their counts; ties go by the word, so the blocks' order never matters."""
    best = heapq.nsmallest(k, words.items(), key=lambda item: (-item[1], item[0]))
    return [(word.decode("utf-8"), count) for word, count in best]
