"""HieraMamba reproducibility suite: the model, dataset readers, training and evaluation."""

__version__ = "0.1.0"
