"""Command-line entry points, run from the repository root as `python -m train.<command>`."""
