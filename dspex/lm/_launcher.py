"""The model server's process: ``python -m dspex.lm._launcher <llama_cpp.server args>``.

It makes sure the server never outlives the dspex process that started it: on Linux the kernel
sends it SIGTERM when its parent dies (``PR_SET_PDEATHSIG``), and everywhere a thread exits the
process as soon as its stdin (a pipe from the parent) reaches end of file.
"""

from __future__ import annotations

import ctypes
import os
import runpy
import signal
import sys
import threading


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """On Linux, have the kernel send this process ``sig`` when its parent dies (and exit
    now if it already has)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, sig)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the parent died before prctl took effect
            os._exit(0)


def _die_with_parent() -> None:
    die_with_parent()

    def watch_stdin() -> None:
        while sys.stdin.buffer.read(4096):
            pass
        os._exit(0)

    threading.Thread(target=watch_stdin, name="dspex-parent-watch", daemon=True).start()


def main() -> None:
    """Start llama-cpp-python's OpenAI-compatible server with the given arguments."""
    _die_with_parent()
    sys.argv = ["llama_cpp.server", *sys.argv[1:]]
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
