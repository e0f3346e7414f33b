"""A model that breaks the training contract in the way its `mode` param names (the DAG run tests train it)."""
