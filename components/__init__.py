"""Typed ComponentResources, one per module, composed by infra/__main__.py."""
