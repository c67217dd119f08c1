"""The DeepSpeech room: the only code that knows DeepSpeech 0.9.3's training CLI, its log lines, its checkpoints,
its scorer package, how a run decodes, where training starts (fine tuning, transfer learning), and what training
does across invocations (training.py).  Nothing here takes a stage's context: each function is given the
settings and paths it reads."""
