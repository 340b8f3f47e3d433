"""A ScriptedLM in its own process, for running the ``dspex`` command against it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

ANSWER = "Paris, the capital and by far the largest city of France, on the river Seine"
"""The scripted answer: longer than any table cell an 80-column terminal could show whole."""

# One reply that satisfies Predict, ChainOfThought and a ReAct step that finishes at once.
REPLY = (
    f"[[ ## reasoning ## ]]\nIt is well known.\n\n[[ ## answer ## ]]\n{ANSWER}\n\n"
    "[[ ## next_thought ## ]]\nI can answer.\n\n[[ ## next_tool_name ## ]]\nfinish\n\n"
    "[[ ## next_tool_args ## ]]\n{}\n\n[[ ## completed ## ]]"
)


@pytest.fixture(scope="module")
def scripted_url() -> Iterator[str]:
    """The base URL of a ``python -m dspex.testing serve`` process answering :data:`REPLY`."""
    command = [sys.executable, "-m", "dspex.testing", "serve", "--reply", REPLY]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    yield server.stdout.readline().strip()
    server.terminate()
    server.wait()


def run_dspex(*args: str, columns: int = 40) -> subprocess.CompletedProcess[str]:
    """Run the ``dspex`` command in a subprocess, its output piped, with ``COLUMNS`` set."""
    command = [sys.executable, "-m", "dspex.cli", *args]
    env = {**os.environ, "COLUMNS": str(columns)}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def closed_port_url() -> str:
    """The URL of an endpoint on 127.0.0.1 that does not answer: a port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"
