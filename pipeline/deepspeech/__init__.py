"""The DeepSpeech room: the only code that knows DeepSpeech 0.9.3's training CLI, its log lines, its checkpoints,
its scorer package, how a run decodes, and where training starts (fine tuning, transfer learning)."""
