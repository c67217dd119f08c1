"""The stages of a run, in order.  Each module provides ``inputs(ctx)`` and ``run(ctx)``."""
from pipeline.runner import Stage
from pipeline.stages import alphabet, check, clean, download, importing

STAGES = (
    Stage("check", "data root, disk space, decoders and the language's own test cases",
          (), check.inputs, check.run, always=True),
    Stage("download", "get and verify every dataset's source archive", ("check",), download.inputs, download.run),
    Stage("import", "extract, convert audio to 16 kHz WAV, normalise labels, reject bad rows",
          ("download",), importing.inputs, importing.run),
    Stage("clean", "merge datasets, validate every row, keep dev/test sentences out of train",
          ("import",), clean.inputs, clean.run),
    Stage("alphabet", "the characters the model outputs", ("clean",), alphabet.inputs, alphabet.run),
)
STAGE_NAMES = tuple(stage.name for stage in STAGES)
