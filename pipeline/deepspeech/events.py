"""DeepSpeech 0.9.3's log lines as events: train.py's epochs and early stops, lm_optimizer.py's trials.

With ``--show_progressbar=false`` (see trainer.py) every progress message of
train.py is an info line, e.g. ``I Finished training epoch 3 - loss: 41.200000``.
"""
import re
from typing import NamedTuple, Optional


class Event(NamedTuple):
    #: "train_loss", "dev_loss", "best_saved", "early_stop", "plateau" or "finished".
    kind: str
    #: DeepSpeech's epoch number, counted from 0 in each invocation; None when the line has none.
    epoch: Optional[int] = None
    value: Optional[float] = None
    detail: str = ""


# The lines of train.py v0.9.3 (log_progress / log_info print "I " + message).
_LINES = (
    ("train_loss", re.compile(r"^I Finished training epoch (?P<epoch>\d+) - loss: (?P<value>\S+)$")),
    ("dev_loss", re.compile(r"^I Finished validating epoch (?P<epoch>\d+) on (?P<detail>.+) - loss: (?P<value>\S+)$")),
    ("best_saved", re.compile(r"^I Saved new best validating model with loss (?P<value>\S+) to: (?P<detail>.+)$")),
    ("early_stop", re.compile(
        r"^I Early stop triggered as the loss did not improve the last (?P<value>\d+) epochs$")),
    ("plateau", re.compile(r"^I Encountered a plateau, reducing learning rate to (?P<value>\S+)$")),
    ("finished", re.compile(r"^I FINISHED optimization in (?P<detail>.+)$")),
)


def parse(line: str) -> Optional[Event]:
    for kind, pattern in _LINES:
        match = pattern.match(line)
        if match:
            groups = match.groupdict()
            epoch = groups.get("epoch")
            value = groups.get("value")
            return Event(kind, int(epoch) if epoch is not None else None,
                         float(value) if value is not None else None, groups.get("detail") or "")
    return None


# lm_optimizer.py's own lines: optuna's log of each trial, then its final print.
_TRIAL = re.compile(r"Trial (?P<number>\d+) (?P<state>finished|pruned)(?: with value: (?P<value>\S+) and parameters: "
                    r"\{'lm_alpha': (?P<alpha>[^,]+), 'lm_beta': (?P<beta>[^}]+)\})?")
_BEST = re.compile(r"^Best params: lm_alpha=(?P<alpha>\S+) and lm_beta=(?P<beta>\S+) with WER=(?P<value>\S+)$")


class Trial(NamedTuple):
    number: int
    #: None for a trial optuna stopped early (pruned) because it was going worse than the others.
    value: Optional[float]
    alpha: Optional[float]
    beta: Optional[float]


def parse_trial(line: str) -> Optional[Trial]:
    match = _TRIAL.search(line)
    if not match:
        return None
    number = int(match["number"])
    if match["state"] == "pruned" or match["value"] is None:
        return Trial(number, None, None, None)
    return Trial(number, float(match["value"]), float(match["alpha"]), float(match["beta"]))


def parse_best(line: str) -> Optional[Trial]:
    """The final line: the best alpha and beta, and their WER (CER for a character-based scorer)."""
    match = _BEST.match(line)
    if not match:
        return None
    return Trial(-1, float(match["value"]), float(match["alpha"]), float(match["beta"]))
