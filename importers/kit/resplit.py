"""Training on every validated clip of a crowd-sourced corpus, not only those of its official train set.

Common Voice's official ``train.tsv`` keeps one recording per sentence, so most
validated clips, often several times the official train set, are only in
``validated.tsv``.  This puts them back into train without letting the test
measure anything the model has heard:

- dev and test stay the official ones, so results remain comparable;
- a validated clip goes to train unless it is itself in dev/test, its speaker
  recorded any dev/test clip, or its sentence (normalised) is a dev/test one;
- each sentence trains at most ``max_repeats`` times, clips of the official
  train set first, then in the order of ``validated.tsv``, as CorporaCreator's
  ``-s`` allows repeated sentences.
"""
from collections import Counter
from typing import Dict, Iterable, List, NamedTuple, Optional, Set, Tuple

#: The rule, as the manifest and the clean report state it.
RULE = ("official dev and test kept; train = every other validated clip whose speaker (client_id) and sentence are "
        "in neither dev nor test, each sentence at most max_repeats times (official train clips first)")


class Recording(NamedTuple):
    #: The clip's file name, as the TSVs give it.
    name: str
    speaker: str
    #: The normalised sentence; None when it was rejected (a held-out speaker still counts).
    label: Optional[str]
    #: Where the row is, for rejects.csv ("validated.tsv:12").
    where: str


def train_from_validated(pool: List[Recording], held_out: Iterable[Recording], official_train: Set[str],
                         max_repeats: int) -> Tuple[List[Recording], Dict[str, int]]:
    """The clips of ``pool`` that train, and how many were left out for each reason.

    ``pool`` holds the validated clips that are not themselves in dev/test, with usable labels.
    """
    held = list(held_out)
    speakers = {r.speaker for r in held if r.speaker}
    sentences = {r.label for r in held if r.label}
    counts: Counter = Counter(validated=len(pool))
    uses: Counter = Counter()
    kept = []
    # sorted() is stable: within each group the order of validated.tsv is kept.
    for clip in sorted(pool, key=lambda r: r.name not in official_train):
        if clip.speaker in speakers:
            counts["speaker_in_dev_test"] += 1
        elif clip.label in sentences:
            counts["sentence_in_dev_test"] += 1
        elif uses[clip.label] >= max_repeats:
            counts["over_max_repeats"] += 1
        else:
            uses[clip.label] += 1
            kept.append(clip)
    counts["train"] = len(kept)
    counts["sentences"] = len(uses)
    order = {id(clip): n for n, clip in enumerate(pool)}
    kept.sort(key=lambda clip: order[id(clip)])  # the CSV in the order of validated.tsv
    return kept, {key: counts[key] for key in ("validated", "speaker_in_dev_test", "sentence_in_dev_test",
                                                "over_max_repeats", "train", "sentences")}
