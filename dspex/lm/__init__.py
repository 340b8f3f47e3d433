"""LM configuration and the native async chat-completions client.

:class:`LM` is plain configuration both implementations read: :class:`LMClient` sends the same
request body DSPy 3.4.1 sends through LiteLLM (key order included), and :meth:`LM.to_dspy` builds
the equivalent ``dspy.LM``.

HTTP library, chosen by measurement (``benchmarks/bench_lm_client.py``: 2 cores, ScriptedLM in its
own process, same pool size, best of 3 rounds): aiohttp 3.14. Raw aiohttp spent ~140 µs of client
CPU per sequential request against ~700 µs for httpx 0.28 (5x), served ~12,500 requests/s at 32
in flight against ~800 (15x), and ~3,400/s with 200 in flight against a 50 ms server (ideal 4,000)
against ~100 for httpx, whose connection pool degrades badly under concurrency. LMClient adds
~25 µs of CPU per call to raw aiohttp (body encoding, typed decoding, retries, accounting).
"""

from dspex.lm._client import LMClient, RetryPolicy
from dspex.lm._config import LM
from dspex.lm._embedded import LocalLM, ServerStatus
from dspex.lm._local import MODELS, LocalModel, assemble, local_model
from dspex.lm._wire import Completion, Message, Usage

__all__ = [
    "LM",
    "MODELS",
    "Completion",
    "LMClient",
    "LocalLM",
    "LocalModel",
    "Message",
    "RetryPolicy",
    "ServerStatus",
    "Usage",
    "assemble",
    "local_model",
]
