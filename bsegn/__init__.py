"""BSeGN: Balanced Semantic Embedding for Generative zero-shot learning.

A reproducible pipeline: the modules here hold every piece of data, model, training
and evaluation logic; the scripts in ``stages/`` only wire them to DVC.
"""

__version__ = "0.1.0"
