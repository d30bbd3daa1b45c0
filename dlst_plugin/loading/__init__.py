"""Networks from files: priors into archs (``priors``), the shapes a state dict implies and fits (``shapes``),
restorers and degraders from their checkpoints (``networks``). The bridge between the archs and the checkpoint
readers: it imports both; neither imports it."""
