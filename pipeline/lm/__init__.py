"""The language-model room: the normalised text corpus and KenLM's tools (the scorer is DeepSpeech's: deepspeech/)."""
