"""``python -m dspex.testing serve`` runs a ScriptedLM as its own process."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request


def test_serve_prints_its_url_serves_and_stops_on_sigterm() -> None:
    command = [sys.executable, "-m", "dspex.testing", "serve", "--port", "0", "--reply", "hi"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        assert base_url.endswith("/v1")
        body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}]})
        request = urllib.request.Request(
            f"{base_url}/chat/completions",
            data=body.encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            reply = json.load(response)
        assert reply["choices"][0]["message"]["content"] == "hi"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
