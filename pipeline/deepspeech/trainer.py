"""DeepSpeech 0.9.3's command line, and running it: the only module that writes its flags.

Flag names and meanings are those of ``training/deepspeech_training/util/flags.py``
at v0.9.3.  DeepSpeech is run as ``python -m deepspeech_training.train`` under
the trainer's Python (``DeepSpeech.py`` only calls that module's ``run_script``).
With ``--show_progressbar=false`` no progress bar is drawn and every progress
message becomes an info line that events.py reads.
"""
import logging
import os
import re
import shlex
import subprocess
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

from dstrain.pipeline import processes
from dstrain.pipeline.errors import ConfigError, Portable, StageError
from dstrain.pipeline.language import ModelMetadata
from dstrain.pipeline.paths import DataRoot
from dstrain.pipeline.settings import EvaluateSettings, OptimizeSettings, Settings, TrainSettings

log = logging.getLogger("dstrain")

TRAIN_MODULE = "deepspeech_training.train"
#: How TensorFlow reports a GPU (or host) allocation failure.
OUT_OF_MEMORY = re.compile(r"ResourceExhaustedError|OOM when allocating")
#: The trainer's lines a user must see as they come: out of memory, cuDNN failures, infinite or NaN losses,
#: DeepSpeech's errors.  The rest (TensorFlow's deprecation notices above all) goes to the stage log only.
#: (An epoch's infinite or NaN loss reaches the console in the train stage's own line for the epoch.)
MATTERS = re.compile(OUT_OF_MEMORY.pattern + r"|cuDNN|CUDNN_STATUS|infinite \(or NaN\) loss|^E |^Fatal|^FATAL",
                     re.IGNORECASE)


def matters(line: str) -> bool:
    """Whether the console must show this line of the trainer's; not DeepSpeech's own info lines ("I Loading
    variable from checkpoint: cudnn_lstm/..."), which may name cuDNN without being a failure."""
    return bool(MATTERS.search(line)) and not line.startswith("I ")
TAIL_LINES = 30
OPTIMIZER_HOW_TO_GET = ("lm_optimizer.py is at the top of DeepSpeech v0.9.3's source tree (git clone --branch v0.9.3 "
                        "https://github.com/mozilla/DeepSpeech), not in the deepspeech_training package.")
#: dstrain's own .pb to .pbmm converter, beside this module.
MEMMAPPED = Path(__file__).with_name("memmapped.py")


# -- the command line --------------------------------------------------------

def trainer_python(train: TrainSettings) -> str:
    return train.trainer_python or os.environ.get("TRAINER_PYTHON") or "python3"


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


def command(train: TrainSettings, flags: Dict[str, Any]) -> List[str]:
    return [trainer_python(train), "-u", "-m", TRAIN_MODULE] + argv(flags)


def environment(train: TrainSettings) -> Dict[str, str]:
    env = dict(os.environ)
    env.update(
        # Take GPU memory as needed instead of all of it up front (DeepSpeech's TRAINING.rst advice).
        TF_FORCE_GPU_ALLOW_GROWTH="true" if train.gpu_allow_growth else "false",
        # Rebuild cuDNN's RNN descriptor and random state on every step (TensorFlow's cudnn_rnn_ops);
        # the known cure for cuDNN LSTM failures on batches of varying length.
        TF_CUDNN_RESET_RND_GEN_STATE="1",
        PYTHONUNBUFFERED="1",
    )
    # As activating its virtualenv would: TensorFlow's tflite export runs the console script
    # toco_from_protos, installed beside the trainer's Python.
    python = trainer_python(train)
    if os.path.dirname(python):
        env["PATH"] = os.path.dirname(os.path.abspath(python)) + os.pathsep + env.get("PATH", "")
    return env


@dataclass(frozen=True)
class Graph:
    """What every invocation needs to rebuild the same graph, and where its checkpoints and summaries are."""

    alphabet: Path
    n_hidden: int
    bytes_output_mode: bool
    #: DeepSpeech's checkpoint directory: training saves there, decoding and export load the model from it.
    checkpoints: Path
    #: Without it DeepSpeech writes TensorBoard files under the user's home.
    summaries: Path


@dataclass(frozen=True)
class Model:
    """The trained model, as the test, lm_optimizer.py and the export load it."""

    graph: Graph
    #: train.model_checkpoint: DeepSpeech's own names, the best-dev ("best") or the last ("last") state file.
    checkpoint: str

    @classmethod
    def of(cls, settings: Settings, paths: DataRoot) -> "Model":
        """The model of the run these settings and this data root describe."""
        graph = Graph(paths.alphabet, settings.train.n_hidden, settings.lm.bytes_output_mode, paths.checkpoints,
                      paths.summaries)
        return cls(graph, settings.train.model_checkpoint)


def _model_flags(graph: Graph) -> Dict[str, Any]:
    """What every invocation needs to rebuild the same graph, and where it may write."""
    return {
        "alphabet_config_path": graph.alphabet,
        "bytes_output_mode": graph.bytes_output_mode or None,
        "n_hidden": graph.n_hidden,
        "summary_dir": graph.summaries,
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


def train_flags(graph: Graph, t: TrainSettings, data: Tuple[Path, Path], start: Start, epochs: int,
                batches: Tuple[int, int], feature_cache: Optional[Path]) -> Dict[str, Any]:
    """``data``: the train and dev sets, CSVs or sample databases (clips.format: DeepSpeech reads either);
    ``batches``: the train and dev batch sizes in use."""
    flags = _model_flags(graph)
    flags.update({
        "train_files": data[0],
        "dev_files": data[1],
        "train_batch_size": batches[0],
        "dev_batch_size": batches[1],
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
        "checkpoint_dir": graph.checkpoints,
        "load_checkpoint_dir": start.load_dir,
        "save_checkpoint_dir": graph.checkpoints,
        "load_train": start.load_train,
        "drop_source_layers": start.drop_source_layers or None,
        "load_cudnn": start.load_cudnn or None,
        "force_initialize_learning_rate": start.reset_learning_rate or None,
    })
    return flags


def _decode_flags(model: Model, beam_width: int, csv: Path, batch: int) -> Dict[str, Any]:
    """Decoding ``csv`` with the model's checkpoint: evaluate.py's test, and each trial of lm_optimizer.py."""
    flags = _model_flags(model.graph)
    flags.update({
        "test_files": csv,
        "test_batch_size": batch,
        "checkpoint_dir": model.graph.checkpoints,
        "load_evaluate": model.checkpoint,
        "beam_width": beam_width,
    })
    return flags


def test_flags(model: Model, evaluate: EvaluateSettings, test_csv: Path, output: Path, decoder,
               batch: int) -> Dict[str, Any]:
    """``decoder``: a :class:`decoding.Decoder`."""
    flags = _decode_flags(model, evaluate.beam_width, test_csv, batch)
    flags.update({"test_output_file": output, "report_count": evaluate.report_count})
    if decoder.scorer is not None:
        flags.update({"scorer_path": decoder.scorer, "lm_alpha": decoder.alpha, "lm_beta": decoder.beta})
    return flags


def find_optimizer(optimize: OptimizeSettings) -> Path:
    """DeepSpeech's lm_optimizer.py, as optimize.script names it; refused before any work when it is missing."""
    script = optimize.script
    if script is None:
        raise ConfigError("optimize.enabled is true but optimize.script is not set. " + OPTIMIZER_HOW_TO_GET
                          + " Set optimize.script to its path.")
    script = script.expanduser()
    if not script.is_file():
        raise ConfigError(f"optimize.script: {script} is not a file. " + OPTIMIZER_HOW_TO_GET)
    return script


def memmapped_command(train: TrainSettings, pb: Path, pbmm: Path) -> List[str]:
    """dstrain's converter to TensorFlow's memmapped format; the trainer's Python runs it, for TensorFlow's
    protobuf modules."""
    return [trainer_python(train), str(MEMMAPPED), str(pb), str(pbmm)]


def optimizer_command(train: TrainSettings, script: Path, flags: Dict[str, Any]) -> List[str]:
    """DeepSpeech's lm_optimizer.py takes the training flags, plus its own three."""
    return [trainer_python(train), "-u", str(script)] + argv(flags)


def optimizer_flags(model: Model, beam_width: int, o: OptimizeSettings, dev_csv: Path, scorer: Path, batch: int,
                    trials: int) -> Dict[str, Any]:
    """lm_optimizer.py decodes its --test_files; dstrain gives it the dev set, so the test set stays unseen."""
    flags = _decode_flags(model, beam_width, dev_csv, batch)
    flags.update({"scorer_path": scorer, "n_trials": trials, "lm_alpha_max": o.alpha_max,
                  "lm_beta_max": o.beta_max})
    return flags


def export_flags(model: Model, meta: ModelMetadata, beam_width: int, kind: str, export_dir: Path,
                 scorer: Optional[Path]) -> Dict[str, Any]:
    """kind: "pb", "tflite" or "zip" (a TFLite model zipped with the scorer, DeepSpeech's --export_zip);
    ``beam_width``: the default the model carries (export.beam_width)."""
    flags = _model_flags(model.graph)
    flags.update({
        "checkpoint_dir": model.graph.checkpoints,
        "load_evaluate": model.checkpoint,
        "export_dir": export_dir,
        "export_tflite": kind == "tflite" or None,
        "export_zip": kind == "zip" or None,
        "scorer_path": scorer if kind == "zip" else None,
        "export_beam_width": beam_width,
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
    """Run DeepSpeech, stream its output to the stage log (the lines that matter to the console too), and
    watch for out-of-memory."""
    # The stage log's: a training's command line is about 900 characters, too long for the console.
    log.debug("$ %s", " ".join(shlex.quote(part) for part in cmd))
    tail: deque = deque(maxlen=TAIL_LINES)
    out_of_memory = False
    try:
        proc = processes.start(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, text=True, encoding="utf-8", errors="replace", bufsize=1)
    except OSError as exc:
        raise StageError(f"cannot start the trainer {cmd[0]!r}: {exc.strerror or exc}. Set TRAINER_PYTHON "
                         "(or train.trainer_python) to a Python with deepspeech_training 0.9.3.") from None
    try:
        for raw in proc.stdout:
            line = raw.rstrip("\n")
            log.log(logging.WARNING if matters(line) else logging.DEBUG, "  %s", line)
            tail.append(line)
            if OUT_OF_MEMORY.search(line):
                out_of_memory = True
            if on_line is not None:
                on_line(line)
        proc.wait()
    finally:
        # Interrupted (Ctrl-C, docker stop): the epochs DeepSpeech finished are saved, the one under way
        # cannot be, so stop it now rather than let it train on unrecorded.
        processes.stop(proc, grace=30)
    return Outcome(proc.returncode, out_of_memory, list(tail))


class Failed(Portable, Exception):
    """DeepSpeech exited with an error; raised inside an attempt given to :func:`halving_batch`."""

    def __init__(self, outcome: Outcome):
        super().__init__(outcome.returncode)
        self.outcome = outcome


def halving_batch(min_batch_size: int, batch: int, what: str, attempt: Callable[[int], Any]) -> Any:
    """``attempt(batch)``, with the batch halved while DeepSpeech runs out of memory, down to ``min_batch_size``
    (train.min_batch_size)."""
    while True:
        try:
            return attempt(batch)
        except Failed as failed:
            outcome = failed.outcome
            if outcome.out_of_memory and batch // 2 >= min_batch_size:
                log.warning("out of memory: %s batch size %d halved to %d", what, batch, batch // 2)
                batch //= 2
                continue
            raise StageError("DeepSpeech's {} failed (exit code {}); its last lines:\n    {}".format(
                what, outcome.returncode, "\n    ".join(outcome.tail))) from None
