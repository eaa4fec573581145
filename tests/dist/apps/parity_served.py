"""Worker target for the parity tests: the agent of ``parity_app``."""

from parity_app import build

calc = build()
