"""What DeepSpeech reads: 16 kHz mono WAVs (one clip, or cut from long recordings), its CSVs, its alphabet."""
