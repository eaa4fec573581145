"""Worker target for the parity tests: the agent of ``parity_app``."""

from parity_app import build  # type: ignore[import-not-found]  # on the worker's path

calc = build()
