"""HieraMamba reproducibility suite: the model, dataset readers, training and evaluation."""

__version__ = "0.1.0"


def predict(model, video, queries, **kwargs):
    """Top-k moments (start_s, end_s, score) of text queries in one video with a trained model.

    See `hieramamba.engine.predict.predict` (imported here on first call, so `import hieramamba`
    stays light)."""
    from hieramamba.engine.predict import predict as _predict

    return _predict(model, video, queries, **kwargs)
