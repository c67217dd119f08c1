"""What DeepSpeech reads: 16 kHz mono audio (one clip, or cut from long recordings), its CSVs and sample databases,
its alphabet."""
