"""Training runs and the paper's experiments: what a BasicSR run leaves behind (``runs``: its folder, final
checkpoint, log as curves), Table 1's grid of cells (``table1``) and running it (``table1_runs``)."""
