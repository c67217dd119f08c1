"""What one training is given: the settings it reads and the files it reads and writes, nothing more.

The train stage builds a ``Plan`` from the run's settings and data root; training.py and start.py read only
this, so what training depends on is written down here rather than found by following a run's context.
"""
from dataclasses import dataclass
from pathlib import Path

from dstrain.pipeline.deepspeech.trainer import Graph
from dstrain.pipeline.paths import ClipSet, DataRoot
from dstrain.pipeline.settings import Settings, TrainSettings


@dataclass(frozen=True)
class Plan:
    #: train.*: the hyperparameters, the batch sizes, where training starts, which checkpoint is the model.
    train: TrainSettings
    #: lm.bytes_output_mode: the output layer's shape.
    bytes_output_mode: bool
    #: english_compatible: only to say why a source's alphabet is this run's.
    english_compatible: bool
    #: The train and dev sets, CSVs or sample databases (clips.format).
    train_set: ClipSet
    dev_set: ClipSet
    alphabet: Path
    #: DeepSpeech's checkpoints, and beside them the run's own account of training and the best checkpoint's copy.
    checkpoints: Path
    progress: Path
    best_backup: Path
    #: reports/metrics.json, whose "training" part the account keeps up to date.
    metrics: Path
    feature_cache: Path
    summaries: Path
    #: The train stage's completion record: a forced training deletes it first, so an interruption shows as not done.
    record: Path
    #: --force train: the checkpoints are deleted and training starts over.
    forced: bool = False

    @classmethod
    def of(cls, settings: Settings, paths: DataRoot, forced: bool = False) -> "Plan":
        return cls(settings.train, settings.lm.bytes_output_mode, settings.english_compatible,
                   paths.clean_set("train"), paths.clean_set("dev"), paths.alphabet, paths.checkpoints,
                   paths.training_progress, paths.best_backup, paths.metrics, paths.feature_cache, paths.summaries,
                   paths.record("train"), forced)

    @property
    def graph(self) -> Graph:
        return Graph(self.alphabet, self.train.n_hidden, self.bytes_output_mode, self.checkpoints, self.summaries)
