"""train: DeepSpeech 0.9.3 learns the acoustic model, in the run's own checkpoints.

The stage is done only when training has finished: every configured epoch, counted across resumes, or an
early stop.  What training does (resuming, halving the batches on out-of-memory, keeping the best
checkpoint, fine tuning or transfer learning) is deepspeech/training.py's; this driver gives it the run's
settings and paths.
"""
from dstrain.pipeline.deepspeech import training
from dstrain.pipeline.deepspeech.plan import Plan


def _plan(ctx) -> Plan:
    return Plan.of(ctx.config.settings, ctx.paths, forced="train" in ctx.forced)


def inputs(ctx) -> dict:
    return training.inputs(_plan(ctx))


def run(ctx) -> dict:
    return training.run(_plan(ctx))
