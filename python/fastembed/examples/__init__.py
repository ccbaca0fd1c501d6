"""Runnable examples: ``python -m fastembed.examples.<name>`` (see each module's docstring)."""
