"""``apps/virtual_app`` built in a worker (``pygents-worker virtual_served``)."""

from virtual_app import build

coordinator = build()
