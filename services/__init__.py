"""Services of the platform: the model-serving service and helpers shared with the DAGs."""
