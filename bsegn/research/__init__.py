"""Research and performance tools beside the pipeline: the in-process ablation grid, the
benchmark of the trainer, the reference trainer it is checked against, the realistic family's
calibration, and the comparison and fidelity tables built from the records in ``records/``.
No stage imports them; they import the product modules of :mod:`bsegn`."""
