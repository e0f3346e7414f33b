"""Iris classifier: an example model trained by the platform (entrypoint `iris_model.train:train`)."""
