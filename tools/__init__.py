"""Repository tools (run by the workflows and by hand); not part of the deployed program."""
