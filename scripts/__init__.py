"""Command-line entry points: `python -m scripts.<name>` from the repository root."""
