"""The reports a person reads: the evaluation report and the model card."""
