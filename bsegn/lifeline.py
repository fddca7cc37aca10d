"""Tie a stage's life to the ``dvc`` process that started it (Linux).

When ``dvc repro`` is killed, its stage would otherwise go on as an orphan and write its
outputs later, behind the user's back. The kernel can send us SIGTERM when our parent dies
(``prctl(PR_SET_PDEATHSIG)``), but only for deaths *after* the request, so the request must
be made as early as possible: ``stages/__init__.py`` makes it before the stage imports torch,
which takes seconds on a slow machine. This module imports only the standard library.

Our parent must be dvc itself, not the shell it runs the command with (a shell outlives a
killed dvc): so every ``cmd`` in ``dvc.yaml`` starts with ``exec``. bash replaces itself
with a lone command anyway; dash, ``/bin/sh`` on Debian and DVC's shell when SHELL is unset,
does not.
"""

from __future__ import annotations

import ctypes
import os
import sys
import signal

_PR_SET_PDEATHSIG = 1
_parent_at_start: int | None = None  # real process state: the pid of our parent when we asked


def watch_parent() -> None:
    """Ask for SIGTERM when our parent dies. Until a handler is installed, SIGTERM's default
    action ends the process at once, which is right: nothing has been written yet."""
    global _parent_at_start
    if _parent_at_start is not None:
        return
    _parent_at_start = os.getppid()
    signal_when_parent_dies(signal.SIGTERM)


def signal_when_parent_dies(sig: int) -> None:
    """Ask the kernel to send us ``sig`` when our parent dies (Linux; elsewhere nothing). Also
    for a ``subprocess`` ``preexec_fn``, which ties the child to the process starting it."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, sig)


def parent_gone() -> bool:
    """True if the parent we had when ``watch_parent`` ran has died since (we were re-parented)."""
    return _parent_at_start is not None and os.getppid() != _parent_at_start
