"""The example app of pygents_dist: a research pipeline (``research.py``) served by workers,
and the driver that runs it end to end (``python -m workers.demo``)."""
