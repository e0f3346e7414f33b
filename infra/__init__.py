"""The Pulumi program that composes the platform (entry: infra/__main__.py)."""
