"""Diabetes progression regression: an example model trained by the platform (`diabetes_model.train:train`)."""
