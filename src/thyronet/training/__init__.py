"""Training: the LightningModules and DataModule, a run, cross-validation, comparisons, self-supervised
pretraining, callbacks, losses, optimisers and provenance."""
