"""Loopback ports: the address every server and proxy here listens on, and :func:`free_port`."""

from __future__ import annotations

import socket

_LOCALHOST = "127.0.0.1"


def free_port(host: str = _LOCALHOST) -> int:
    """Return a TCP port that is free on ``host`` right now.

    The port is released before returning, so another process may take it before the caller
    binds it; :class:`RedisServer` retries with a new port when that happens.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port
