"""The stages of a run, in order.  Each module provides ``inputs(ctx)`` and ``run(ctx)``."""
from dstrain.pipeline.stage import Stage
from dstrain.pipeline.stages import (
    alphabet,
    check,
    clean,
    download,
    evaluate,
    export,
    importing,
    lm,
    optimize,
    package,
    train,
)

STAGES = (
    Stage("check", "data root, disk space, decoders, the language's own test cases, the trainer and tools",
          (), check.inputs, check.run, always=True),
    Stage("download", "get and verify every dataset's source archive", ("check",), download.inputs, download.run),
    Stage("import", "extract, convert audio to 16 kHz clips (clips.format), normalise labels, reject bad rows",
          ("download",), importing.inputs, importing.run),
    Stage("clean", "merge datasets, validate every row, keep dev/test sentences out of train",
          ("import",), clean.inputs, clean.run),
    Stage("alphabet", "the characters the model outputs", ("clean",), alphabet.inputs, alphabet.run),
    Stage("lm", "language model and scorer from the language's texts, without dev/test sentences",
          ("clean", "alphabet"), lm.inputs, lm.run),
    # train needs no scorer: it runs after lm in a full run, but --from train works while lm is not done.
    Stage("train", "DeepSpeech learns the acoustic model; resumes from its last checkpoint",
          ("clean", "alphabet"), train.inputs, train.run),
    # Before evaluate, so the test measures the decoder that is shipped.  It reads lm's record itself:
    # switched off, it must not require lm.
    Stage("optimize", "optional: the scorer's alpha and beta that decode the dev set best",
          ("clean", "alphabet", "train"), optimize.inputs, optimize.run),
    Stage("evaluate", "WER and CER on the test set, loss curve, report and advice",
          ("clean", "train"), evaluate.inputs, evaluate.run),
    Stage("export", "the model's checkpoint as .tflite, .pb/.pbmm and DeepSpeech's zip, with the metadata",
          ("alphabet", "train"), export.inputs, export.run),
    Stage("package", "release tarballs, the model's checkpoint, a model card and SHA256SUMS",
          ("train", "evaluate", "export"), package.inputs, package.run),
)
STAGE_NAMES = tuple(stage.name for stage in STAGES)
