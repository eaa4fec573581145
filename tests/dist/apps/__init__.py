"""Agent modules the dist tests serve with real workers (put on the workers' PYTHONPATH)."""
