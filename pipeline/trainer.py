"""The only module that knows DeepSpeech 0.9.3's command line and its log.

Flag names and meanings are those of ``training/deepspeech_training/util/flags.py``
at v0.9.3.  DeepSpeech is run as ``python -m deepspeech_training.train`` under
the trainer's Python (``DeepSpeech.py`` only calls that module's ``run_script``).
With ``--show_progressbar=false`` no progress bar is drawn and every progress
message becomes an info line, e.g. ``I Finished training epoch 3 - loss: 41.200000``.
"""
import logging
import os
import re
import shlex
import subprocess
from collections import deque
from pathlib import Path
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence

from pipeline.errors import StageError

log = logging.getLogger("dstrain")

TRAIN_MODULE = "deepspeech_training.train"
#: How TensorFlow reports a GPU (or host) allocation failure.
OUT_OF_MEMORY = re.compile(r"ResourceExhaustedError|OOM when allocating")
TAIL_LINES = 30


# -- the command line --------------------------------------------------------

def trainer_python(settings) -> str:
    return settings.train.trainer_python or os.environ.get("TRAINER_PYTHON") or "python3"


def argv(flags: Dict[str, Any]) -> List[str]:
    """Each flag and each value is its own argv item, so values with spaces are never split."""
    out: List[str] = []
    for name, value in flags.items():
        if value is None:
            continue
        if isinstance(value, bool):
            # absl reads a boolean's value only after '=': "--early_stop false" would turn it on.
            out.append("--{}={}".format(name, "true" if value else "false"))
        elif isinstance(value, (list, tuple)):
            for item in value:  # a multi-string flag such as --augment is repeated
                out += ["--" + name, str(item)]
        elif isinstance(value, Path):
            out += ["--" + name, str(value.absolute())]
        else:
            out += ["--" + name, str(value)]
    return out


def command(settings, flags: Dict[str, Any]) -> List[str]:
    return [trainer_python(settings), "-u", "-m", TRAIN_MODULE] + argv(flags)


def environment(settings) -> Dict[str, str]:
    env = dict(os.environ)
    env.update(
        # Take GPU memory as needed instead of all of it up front (DeepSpeech's TRAINING.rst advice).
        TF_FORCE_GPU_ALLOW_GROWTH="true" if settings.train.gpu_allow_growth else "false",
        # Rebuild cuDNN's RNN descriptor and random state on every step (TensorFlow's cudnn_rnn_ops);
        # the known cure for cuDNN LSTM failures on batches of varying length.
        TF_CUDNN_RESET_RND_GEN_STATE="1",
        PYTHONUNBUFFERED="1",
    )
    # As activating its virtualenv would: TensorFlow's tflite export runs the console script
    # toco_from_protos, installed beside the trainer's Python.
    python = trainer_python(settings)
    if os.path.dirname(python):
        env["PATH"] = os.path.dirname(os.path.abspath(python)) + os.pathsep + env.get("PATH", "")
    return env


def _model_flags(ctx) -> Dict[str, Any]:
    """What every invocation needs to rebuild the same graph, and where it may write."""
    settings = ctx.config.settings
    return {
        "alphabet_config_path": ctx.paths.alphabet,
        "bytes_output_mode": settings.lm.bytes_output_mode or None,
        "n_hidden": settings.train.n_hidden,
        # Without it DeepSpeech writes TensorBoard files under the user's home.
        "summary_dir": ctx.paths.summaries,
        "show_progressbar": False,
        "log_level": 1,
    }


class Start(NamedTuple):
    """Where a training invocation gets its weights."""

    load_dir: Path
    #: DeepSpeech's --load_train: "last", "best" or "init".
    load_train: str
    #: Transfer learning: source layers re-initialised, from the output layer.
    drop_source_layers: int = 0
    #: The source was trained with cuDNN and this run is not.
    load_cudnn: bool = False
    #: Use the configured learning rate, not the one saved in the checkpoint.
    reset_learning_rate: bool = False


def train_flags(ctx, start: Start, epochs: int, train_batch: int, dev_batch: int,
                feature_cache: Optional[Path]) -> Dict[str, Any]:
    t = ctx.config.settings.train
    flags = _model_flags(ctx)
    flags.update({
        "train_files": ctx.paths.clean_csv("train"),
        "dev_files": ctx.paths.clean_csv("dev"),
        "train_batch_size": train_batch,
        "dev_batch_size": dev_batch,
        "epochs": epochs,
        "learning_rate": t.learning_rate,
        "dropout_rate": t.dropout_rate,
        "early_stop": t.early_stop,
        "es_epochs": t.es_epochs,
        "es_min_delta": t.es_min_delta,
        "reduce_lr_on_plateau": t.reduce_lr_on_plateau,
        "plateau_epochs": t.plateau_epochs,
        "plateau_reduction": t.plateau_reduction,
        "automatic_mixed_precision": t.automatic_mixed_precision,
        "train_cudnn": t.train_cudnn,
        "feature_cache": feature_cache,
        "max_to_keep": t.max_to_keep,
        "augment": list(t.augment) or None,
        # Left empty, DeepSpeech creates a directory under the user's home (its XDG default).
        "checkpoint_dir": ctx.paths.checkpoints,
        "load_checkpoint_dir": start.load_dir,
        "save_checkpoint_dir": ctx.paths.checkpoints,
        "load_train": start.load_train,
        "drop_source_layers": start.drop_source_layers or None,
        "load_cudnn": start.load_cudnn or None,
        "force_initialize_learning_rate": start.reset_learning_rate or None,
    })
    return flags


def _decode_flags(ctx, csv: Path, batch: int) -> Dict[str, Any]:
    """Decoding ``csv`` with the best checkpoint: evaluate.py's test, and each trial of lm_optimizer.py."""
    flags = _model_flags(ctx)
    flags.update({
        "test_files": csv,
        "test_batch_size": batch,
        "checkpoint_dir": ctx.paths.checkpoints,
        "load_evaluate": "best",
        "beam_width": ctx.config.settings.evaluate.beam_width,
    })
    return flags


def test_flags(ctx, test_csv: Path, output: Path, decoder, batch: int) -> Dict[str, Any]:
    """``decoder``: a :class:`pipeline.decoding.Decoder`."""
    flags = _decode_flags(ctx, test_csv, batch)
    flags.update({"test_output_file": output, "report_count": ctx.config.settings.evaluate.report_count})
    if decoder.scorer is not None:
        flags.update({"scorer_path": decoder.scorer, "lm_alpha": decoder.alpha, "lm_beta": decoder.beta})
    return flags


def optimizer_command(settings, script: Path, flags: Dict[str, Any]) -> List[str]:
    """DeepSpeech's lm_optimizer.py takes the training flags, plus its own three."""
    return [trainer_python(settings), "-u", str(script)] + argv(flags)


def optimizer_flags(ctx, dev_csv: Path, scorer: Path, batch: int, trials: int) -> Dict[str, Any]:
    """lm_optimizer.py decodes its --test_files; dstrain gives it the dev set, so the test set stays unseen."""
    o = ctx.config.settings.optimize
    flags = _decode_flags(ctx, dev_csv, batch)
    flags.update({"scorer_path": scorer, "n_trials": trials, "lm_alpha_max": o.alpha_max,
                  "lm_beta_max": o.beta_max})
    return flags


def export_flags(ctx, kind: str, export_dir: Path, scorer: Optional[Path]) -> Dict[str, Any]:
    """kind: "pb", "tflite" or "zip" (a TFLite model zipped with the scorer, DeepSpeech's --export_zip)."""
    meta = ctx.language.model_metadata()
    flags = _model_flags(ctx)
    flags.update({
        "checkpoint_dir": ctx.paths.checkpoints,
        "load_evaluate": "best",
        "export_dir": export_dir,
        "export_tflite": kind == "tflite" or None,
        "export_zip": kind == "zip" or None,
        "scorer_path": scorer if kind == "zip" else None,
        "export_beam_width": ctx.config.settings.export.beam_width,
        "export_author_id": meta.author,
        "export_model_name": meta.model_name,
        "export_model_version": meta.model_version,
        "export_contact_info": meta.contact_info,
        "export_license": meta.license,
        "export_language": meta.language,
        "export_min_ds_version": meta.min_ds_version,
        "export_max_ds_version": meta.max_ds_version,
        "export_description": meta.description,
    })
    return flags


# -- running it ----------------------------------------------------------------

class Outcome(NamedTuple):
    returncode: int
    out_of_memory: bool
    #: The last lines printed, to show with an error.
    tail: List[str]

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run(cmd: Sequence[str], env: Dict[str, str], on_line: Optional[Callable[[str], None]] = None) -> Outcome:
    """Run DeepSpeech, stream its output to the stage log and the console, and watch for out-of-memory."""
    log.info("$ %s", " ".join(shlex.quote(part) for part in cmd))
    tail: deque = deque(maxlen=TAIL_LINES)
    out_of_memory = False
    try:
        proc = subprocess.Popen(list(cmd), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, text=True, encoding="utf-8", errors="replace",
                                bufsize=1)
    except OSError as exc:
        raise StageError(f"cannot start the trainer {cmd[0]!r}: {exc.strerror or exc}. Set TRAINER_PYTHON "
                         "(or train.trainer_python) to a Python with deepspeech_training 0.9.3.") from None
    try:
        for raw in proc.stdout:
            line = raw.rstrip("\n")
            log.info("  %s", line)
            tail.append(line)
            if OUT_OF_MEMORY.search(line):
                out_of_memory = True
            if on_line is not None:
                on_line(line)
        proc.wait()
    finally:
        if proc.poll() is None:
            # Interrupted (Ctrl-C, docker stop): the epochs DeepSpeech finished are saved, the one under way
            # cannot be, so stop it now rather than let it train on unrecorded.
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except (subprocess.TimeoutExpired, KeyboardInterrupt):
                proc.kill()
                proc.wait()
    return Outcome(proc.returncode, out_of_memory, list(tail))


class Failed(Exception):
    """DeepSpeech exited with an error; raised inside an attempt given to :func:`halving_batch`."""

    def __init__(self, outcome: Outcome):
        super().__init__(outcome.returncode)
        self.outcome = outcome


def halving_batch(settings, batch: int, what: str, attempt: Callable[[int], Any]) -> Any:
    """``attempt(batch)``, with the batch halved while DeepSpeech runs out of memory."""
    while True:
        try:
            return attempt(batch)
        except Failed as failed:
            outcome = failed.outcome
            if outcome.out_of_memory and batch // 2 >= settings.train.min_batch_size:
                log.warning("out of memory: %s batch size %d halved to %d", what, batch, batch // 2)
                batch //= 2
                continue
            raise StageError("DeepSpeech's {} failed (exit code {}); its last lines:\n    {}".format(
                what, outcome.returncode, "\n    ".join(outcome.tail))) from None


# -- reading its log -----------------------------------------------------------

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
