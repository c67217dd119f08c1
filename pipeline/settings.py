"""The settings schema: every key a run reads, its default, its bounds and what it means.

These pydantic models are what ``dstrain config`` prints and what a config file, ``DSTRAIN_*`` variables and
flags are checked against (config.py layers them); they are also the schema a service's requests will use.
Nested keys use dots in files and flags (``clean.shared_transcripts``).
"""
import os
import re
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dstrain.pipeline.sources.egress import parse_exception


def _listed(value, separators: str):
    """A list given as one string (from the environment or a flag) split at ``separators``; lists pass as they are."""
    if isinstance(value, str):
        return tuple(part for part in re.split(separators, value.strip()) if part)
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CleanSettings(_Section):
    shared_transcripts: str = Field(
        "drop",
        pattern="^(drop|keep)$",
        description="transcripts found in both train and dev/test: 'drop' them from train, or 'keep'",
    )
    silence_dbfs: float = Field(
        -50.0, lt=0, description="a clip with under 0.1 s louder than this (dB below full scale, per 20 ms) is silent")
    min_chars_per_second: float = Field(
        1.0, ge=0, description="fewer transcript characters per second of speech than this: the label cannot fit")
    max_chars_per_second: float = Field(
        30.0, gt=0, description="more transcript characters per second of speech than this: nobody speaks so fast")


class ClipsSettings(_Section):
    """How the clips are stored, from the import to what DeepSpeech reads (docs/training.md compares them)."""

    # sdb with Opus: a sixteenth of the disk, training as fast; the import encodes Opus, about ten times the
    # time of writing WAVs (docs/training.md has the measurements).
    format: str = Field(
        "sdb", pattern="^(wav|sdb)$",
        description="wav: one 16 kHz WAV file per clip, listed in DeepSpeech CSVs; sdb: each of train, dev and test "
                    "in one DeepSpeech sample database (train.sdb), no file per clip")
    sdb_audio: str = Field(
        "opus", pattern="^(opus|wav)$",
        description="the audio inside a sample database: opus (a sixth of a WAV's size or less; needs libopus) or wav")
    opus_complexity: int = Field(
        9, ge=0, le=10,
        description="libopus's encoder complexity, 0 to 10: 9, libopus's default and DeepSpeech's, is the most "
                    "faithful; 5 encodes Opus twice as fast, 0 four times, each a little further from the clip "
                    "(docs/training.md)")
    keep_extracted: bool = Field(
        False, description="keep what an import extracted from its archive (extracted/) once the import is "
                           "recorded: faster re-imports with other parameters, at the cost of the disk space")


#: DeepSpeech 0.9.3's decoder defaults, tuned for its English model.
DEEPSPEECH_ALPHA = 0.931289039105002
DEEPSPEECH_BETA = 1.1834137581510284


#: A file name in sources/: no directory, no leading dot.
SOURCE_FILENAME = r"^[A-Za-z0-9][A-Za-z0-9._+-]*$"
#: A pinned sha256 of a source, as sha256sum prints it; the importers' parameters use it too.
SHA256 = r"^[0-9a-fA-F]{64}$"


class TextSourceSettings(_Section):
    """Overrides one of the language's text sources (a mirror, a pinned sha256), or adds one."""

    url: Optional[str] = Field(None, description="where to download it (none: place the file by hand)")
    sha256: Optional[str] = Field(None, pattern=SHA256)
    filename: Optional[str] = Field(None, pattern=SOURCE_FILENAME,
                                    description="its name in sources/ (default: the URL's last part)")
    licence: Optional[str] = None


class LmSettings(_Section):
    """The language model and its scorer: KenLM defaults from the original French pipeline, alpha/beta DeepSpeech's."""

    sources: Optional[Tuple[str, ...]] = Field(
        None, description="use only these text sources (default: all of them; [] for none)")
    source: Dict[str, TextSourceSettings] = Field(
        default_factory=dict, description="text sources changed or added, e.g. lm.source.wikipedia.url")
    train_transcripts: bool = Field(True, description="add the cleaned training transcripts to the corpus")
    exclude_held_out: bool = Field(
        True, description="drop corpus sentences found in the dev or test set (else the test measures memory)")
    order: int = Field(4, ge=2, le=6, description="n-gram order (lmplz --order; this KenLM build stops at 6)")
    prune: Tuple[int, ...] = Field(
        (0, 0, 1), description="lmplz --prune: per order, drop n-grams seen at most this often ('0 0 1')")
    memory: str = Field("80%", pattern=r"^\d+(\.\d+)?(%|[bKMGTPE])?$",
                        description="lmplz sorting memory (--memory): a share of RAM ('80%') or a size ('4G')")
    discount_fallback: bool = Field(
        True, description="lmplz --discount_fallback: fixed discounts when a small corpus defeats the estimate")
    top_k: int = Field(500000, ge=1, description="vocabulary: the most frequent words kept in the model")
    q_bits: int = Field(8, ge=1, le=25, description="build_binary -q: bits per quantised probability and backoff")
    a_bits: int = Field(255, ge=0, le=255, description="build_binary -a: most bits of pointer compression")
    alpha: float = Field(DEEPSPEECH_ALPHA, description="the scorer's default alpha (language-model weight)")
    beta: float = Field(DEEPSPEECH_BETA, description="the scorer's default beta (word insertion bonus)")
    bytes_output_mode: bool = Field(
        False, description="DeepSpeech bytes output mode: a character-level scorer without an alphabet")
    kenlm_bin: Optional[Path] = Field(
        None, description="directory holding lmplz, filter, build_binary (default: PATH, then /usr/local/bin)")
    scorer_tool: Optional[Path] = Field(
        None, description="DeepSpeech's generate_scorer_package (default: PATH, then /usr/local/bin)")

    @field_validator("sources", "prune", mode="before")
    @classmethod
    def _split_words(cls, value):
        return _listed(value, r"[\s,|]+")

    @field_validator("prune")
    @classmethod
    def _check_prune(cls, prune, info):
        # lmplz's own rules, checked before hours of corpus preparation rather than after.
        order = info.data.get("order")
        if order is not None and len(prune) > order:
            raise ValueError(f"{len(prune)} thresholds but order is {order}")
        if any(t < 0 for t in prune) or any(b < a for a, b in zip(prune, prune[1:])):
            raise ValueError("thresholds must be >= 0 and never decrease")
        return prune


class OptimizeSettings(_Section):
    """DeepSpeech's lm_optimizer.py: the alpha and beta that decode the dev set best (off by default: slow)."""

    enabled: bool = Field(False, description="search alpha and beta after training, and ship the scorer with them")
    script: Optional[Path] = Field(
        None, description="DeepSpeech v0.9.3's lm_optimizer.py (in its source tree, not in the pip package)")
    trials: int = Field(600, ge=1, description="(alpha, beta) pairs tried; each decodes the whole dev set")
    trials_per_round: int = Field(
        50, ge=1, description="trials per lm_optimizer.py run; a crash loses at most the round under way")
    alpha_max: float = Field(5.0, gt=0, description="alpha is searched in [0, alpha_max]")
    beta_max: float = Field(5.0, gt=0, description="beta is searched in [0, beta_max]")


class TrainSettings(_Section):
    """DeepSpeech 0.9.3 training; the defaults are the original French pipeline's, else DeepSpeech's own."""

    trainer_python: Optional[str] = Field(
        None, description="the Python that runs DeepSpeech 0.9.3 (default: $TRAINER_PYTHON, else python3)")
    smoke: bool = Field(
        True, description="before a run's first training, train a few steps on sample clips, test and export "
                          "them (about a minute), to prove the trainer, the GPU and the export")
    train_batch_size: int = Field(64, ge=1, description="clips per training batch (halved on out-of-memory)")
    dev_batch_size: int = Field(64, ge=1, description="clips per validation batch (halved on out-of-memory)")
    test_batch_size: int = Field(64, ge=1, description="clips per test batch (halved on out-of-memory)")
    min_batch_size: int = Field(1, ge=1, description="out of memory: halve the batch sizes down to this, then stop")
    n_hidden: int = Field(2048, ge=1, description="layer width; fixed once a run has checkpoints")
    epochs: int = Field(30, ge=1, description="passes over the training set, counted across resumes")
    learning_rate: float = Field(1e-4, gt=0, description="Adam learning rate")
    dropout_rate: float = Field(0.3, ge=0, lt=1, description="dropout of the feed-forward layers")
    early_stop: bool = Field(True, description="stop when the dev loss stops improving")
    es_epochs: int = Field(25, ge=1, description="early stop after this many epochs without improvement")
    es_min_delta: float = Field(0.05, ge=0, description="the smallest dev-loss drop that counts as improvement")
    reduce_lr_on_plateau: bool = Field(False, description="reduce the learning rate when the dev loss stalls")
    plateau_epochs: int = Field(10, ge=1, description="epochs without improvement before a reduction")
    plateau_reduction: float = Field(0.1, gt=0, lt=1, description="factor applied to the learning rate")
    automatic_mixed_precision: bool = Field(False, description="float16 where safe (faster on recent GPUs)")
    train_cudnn: bool = Field(False, description="cuDNN LSTM (GPU only; faster; needed by release checkpoints)")
    feature_cache: bool = Field(True, description="cache the training features under the run after epoch 1")
    max_to_keep: int = Field(5, ge=1, description="epoch checkpoints kept (the best one is kept apart)")
    augment: Tuple[str, ...] = Field((), description="DeepSpeech --augment values, e.g. 'volume[p=0.1,dbfs=-10:-40]'")
    gpu_allow_growth: bool = Field(True, description="take GPU memory as needed (TF_FORCE_GPU_ALLOW_GROWTH)")
    source_checkpoint: Optional[Path] = Field(
        None, description="start from this checkpoint directory (fine tuning or transfer learning)")
    source_alphabet: Optional[Path] = Field(
        None, description="the source checkpoint's alphabet (default: alphabet.txt beside the checkpoint)")
    drop_source_layers: int = Field(
        1, ge=1, le=5, description="transfer learning: source layers re-learnt, counted from the output")
    model_checkpoint: str = Field(
        "best", pattern="^(best|last)$",
        description="the checkpoint evaluated, exported and packaged: 'best' (lowest dev loss) or 'last' epoch's")

    @field_validator("augment", mode="before")
    @classmethod
    def _one_augmentation(cls, value):
        # From the environment or a flag: one augmentation (its parameters hold commas); a TOML list for more.
        return (value,) if isinstance(value, str) else value


class EvaluateSettings(_Section):
    beam_width: int = Field(1024, ge=1, description="decoder beam width for the test")
    report_count: int = Field(5, ge=1, description="samples shown for each of best, median and worst")


class ExportSettings(_Section):
    formats: Tuple[str, ...] = Field(
        ("tflite", "pb", "zip"), description="tflite, pb (with its .pbmm), zip")
    beam_width: int = Field(500, ge=1, description="default beam width stored in the exported model")
    acoustic_model_url: Optional[str] = Field(
        None, description="where the model will be published, for its metadata file (none: the field is left out)")
    scorer_url: Optional[str] = Field(
        None, description="where the scorer will be published, for the metadata (none: the field is left out)")
    convert_graphdef_memmapped_format: Optional[str] = Field(
        None, description="TensorFlow's .pb to .pbmm tool, a command or a path (default: dstrain's own converter)")

    @field_validator("formats", mode="before")
    @classmethod
    def _split_formats(cls, value):
        return _listed(value, r"[\s,]+")

    @field_validator("formats")
    @classmethod
    def _check_formats(cls, formats):
        unknown = sorted(set(formats) - {"tflite", "pb", "zip"})
        if unknown:
            raise ValueError("unknown format(s) {}; choose among tflite, pb, zip".format(", ".join(unknown)))
        return formats


class NetworkSettings(_Section):
    """Where downloads may connect (sources/egress.py): every address, unless block_private is on."""

    block_private: bool = Field(
        False, description="refuse loopback, link-local, private and other non-public addresses, checked when "
                           "each connection is made (after DNS and after every redirect); `dstrain serve` turns "
                           "it on for its jobs")
    allow: Tuple[str, ...] = Field(
        (), description="exceptions to block_private: a host name, host:port, an address or a network "
                        "(mirror.internal:8080, 10.1.2.3, 10.8.0.0/16)")

    @field_validator("allow", mode="before")
    @classmethod
    def _split_allow(cls, value):
        return _listed(value, r"[\s,]+")

    @field_validator("allow")
    @classmethod
    def _check_allow(cls, allow):
        for entry in allow:
            parse_exception(entry)  # its ValueError says what is wrong with it
        return allow


class ArchiveSettings(_Section):
    """How far a source archive may expand when it is read (sources/archive.py)."""

    max_expanded_bytes: Optional[int] = Field(
        None, ge=1, description="the most bytes one reading of an archive may decompress (an extraction, or a "
                                "pass over it); past it the import stops with that cause. None: no bound")


class Settings(_Section):
    language: str = Field("fr", description="language code, see `dstrain languages`")
    language_dirs: Tuple[Path, ...] = Field(
        (), description="folders of language modules besides the built-in ones, e.g. from dstrain new-language "
                        "--dir (several: ':' between them, as in PATH)")
    data_root: Path = Field(Path("data"), description="where sources, imports and runs live")
    run: Optional[str] = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
                               description="run name (defaults to the language code)")
    datasets: Optional[Tuple[str, ...]] = Field(
        None, description="use only these datasets of the language; +name adds an opt-in one to the default ones")
    workers: int = Field(0, ge=0, description="parallel audio workers (0 = every core; at most 4 per core)")
    english_compatible: bool = Field(
        False, description="transliterate to ASCII and use the English alphabet (for transfer learning)"
    )
    clips: ClipsSettings = ClipsSettings()
    clean: CleanSettings = CleanSettings()
    lm: LmSettings = LmSettings()
    train: TrainSettings = TrainSettings()
    optimize: OptimizeSettings = OptimizeSettings()
    evaluate: EvaluateSettings = EvaluateSettings()
    export: ExportSettings = ExportSettings()
    network: NetworkSettings = NetworkSettings()
    archives: ArchiveSettings = ArchiveSettings()
    dataset: Dict[str, Dict[str, Any]] = Field(
        default_factory=dict, description="per-dataset importer parameters, e.g. dataset.common_voice.url"
    )

    @field_validator("datasets", mode="before")
    @classmethod
    def _split_list(cls, value):
        return _listed(value, r"\s*,\s*")

    @field_validator("language_dirs", mode="before")
    @classmethod
    def _split_dirs(cls, value):
        return _listed(value, os.pathsep)

    @field_validator("data_root", mode="before")
    @classmethod
    def _not_empty(cls, value):
        # Path("") is the current directory: an empty DSTRAIN_DATA_ROOT (a variable cleared, a typo in a .env
        # file) would otherwise scatter sources/, imported/ and runs/ wherever the command was typed.
        if isinstance(value, str) and not value.strip():
            raise ValueError("must not be empty (unset it to use the default, ./data)")
        return value

    @field_validator("data_root")
    @classmethod
    def _home(cls, value: Path) -> Path:
        # "~/dstrain-data" in a config file or a quoted variable means the home folder, as in a shell, not a
        # folder named "~" in the current directory.
        return value.expanduser()
