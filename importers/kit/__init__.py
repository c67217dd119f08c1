"""What every corpus module is built from: the contract, the label checks, the speaker split, TSV reading,
spoken numbers, and assembling the outputs.  Only corpora use it; machinery the stages share is in the pipeline."""
