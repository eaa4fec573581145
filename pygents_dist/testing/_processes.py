"""Child processes that never outlive their owner: :class:`_Reaper` (run at close, garbage
collection or exit) and :func:`_kill`, shared by the Redis servers and the worker processes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


class _Reaper:
    """Kills a child and removes a directory; run at close, garbage collection or exit."""

    def __init__(self, directory: Path | None = None) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.directory = directory

    def __call__(self) -> None:
        if self.proc is not None:
            _kill(self.proc)
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the child and reap it.

    Children stay in the caller's process group, so a signal to the whole test run (Ctrl-C, a
    CI runner stopping it) reaches them too, even when no cleanup code gets to run.
    """
    if proc.poll() is None:
        proc.kill()
    proc.wait()
