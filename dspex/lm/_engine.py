"""Which of DSPy's engines a request goes by: the same rule on both implementations.

DSPy 3.4.1's default engine (``"auto"``: lm15, without LiteLLM) costs about half the CPU per
call of its LiteLLM engine, and writes another request body (``max_completion_tokens``, floats
for float fields, ``stop`` as a list, its own order). With ``LM(dspy_engine="auto")`` (the
default) a request goes by lm15 where the native client writes lm15's body byte for byte: text
turns only, and only the parameters :func:`~dspex.lm._wire.lm15_params` knows. Any other
request (``n``, tools, ``response_format``, media, a stream, other parameters) goes by
LiteLLM's engine, whose body the native client writes otherwise. Native (``dspex.lm._client``)
and the dspy implementation (:mod:`dspex.lm._dspy_lm`) decide with these functions, so they
send the same bytes for every request.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from dspex.lm._config import LM, is_reasoning_model
from dspex.lm._wire import Message, lm15_params, plain_messages

__all__ = ["by_lm15", "lm15_request"]

# DSPy's auto engine sends every request of a model whose base URL is set in the environment
# by LiteLLM (even with api_base=): so does dspex
_BASE_ENV = ("OPENAI_API_BASE", "OPENAI_BASE_URL")


def by_lm15(lm: LM) -> bool:
    """Whether requests to ``lm`` may go by lm15: ``dspy_engine="auto"``, not an OpenAI
    reasoning model (DSPy rewrites their parameters), and no ``OPENAI_API_BASE`` or
    ``OPENAI_BASE_URL`` in the environment (read now)."""
    return (
        lm.dspy_engine == "auto"
        and not is_reasoning_model(lm.model)
        and not any(os.environ.get(name) for name in _BASE_ENV)
    )


def lm15_request(
    params: Mapping[str, Any], messages: Sequence[Message | Mapping[str, Any]]
) -> dict[str, Any] | None:
    """The parameters of a request to an LM :func:`by_lm15` allows, as lm15 writes them, when
    the request goes by lm15; None when it goes by LiteLLM."""
    written = lm15_params(params)
    return written if written is not None and plain_messages(messages) else None
