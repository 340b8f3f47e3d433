"""``EngineLM``: the dspy.LM the dspy implementation runs on, choosing DSPy's engine per request.

Imported only once DSPy is (``LM.to_dspy``): it subclasses ``dspy.LM``.
"""

from __future__ import annotations

import contextlib
from typing import Any

import dspy
from dspy.clients._deprecation import _adapter_call, adapter_message_call

from dspex.lm._config import _OWN_FIELDS, _UNSUPPORTED
from dspex.lm._engine import lm15_request

__all__ = ["EngineLM"]

# What a dspy.LM's kwargs and a call's keyword arguments hold besides the request body's
# parameters: DSPy's client settings and its own switches (a stream's keys stay: they are the
# body's, and streams go by LiteLLM)
_NOT_BODY = (
    _OWN_FIELDS - {"model", "messages", "temperature", "max_tokens", "max_completion_tokens"}
) | (_UNSUPPORTED - {"stream", "stream_options"})


class EngineLM(dspy.LM):  # type: ignore[misc]
    """A ``dspy.LM`` on DSPy's LiteLLM engine whose calls go by ``lm15``, the same LM on DSPy's
    default engine, when the native client writes their request as that engine does
    (:func:`dspex.lm._engine.lm15_request`): so both implementations send the same body."""

    lm15: Any

    def _engine_for(self, prompt: Any, messages: Any, kwargs: dict[str, Any]) -> Any:
        """``self.lm15`` for a request that goes by lm15, else None (a streamed one goes by
        LiteLLM, as the native client streams)."""
        if messages is None and isinstance(prompt, str):
            messages = [{"role": "user", "content": prompt}]  # what DSPy sends for a prompt
        if not isinstance(messages, list) or dspy.settings.send_stream is not None:
            return None
        params = {k: v for k, v in {**self.kwargs, **kwargs}.items() if k not in _NOT_BODY}
        return self.lm15 if lm15_request(params, messages) is not None else None

    def _as_adapter_call(self, lm15: Any, messages: Any) -> contextlib.AbstractContextManager[Any]:
        """A DSPy adapter's own call of this LM stays one for its twin (DSPy warns about
        message dicts passed to an LM by anyone else)."""
        origin = _adapter_call.get()
        if origin is not None and origin[0] is self and origin[1] is messages:
            return adapter_message_call(lm15, messages)  # type: ignore[no-any-return]
        return contextlib.nullcontext()

    def __call__(self, prompt: Any = None, *, messages: Any = None, **kwargs: Any) -> Any:
        lm15 = self._engine_for(prompt, messages, kwargs)
        if lm15 is None:
            return super().__call__(prompt, messages=messages, **kwargs)
        with self._as_adapter_call(lm15, messages):
            return lm15(prompt, messages=messages, **kwargs)

    async def acall(self, prompt: Any = None, *, messages: Any = None, **kwargs: Any) -> Any:
        lm15 = self._engine_for(prompt, messages, kwargs)
        if lm15 is None:
            return await super().acall(prompt, messages=messages, **kwargs)
        with self._as_adapter_call(lm15, messages):
            return await lm15.acall(prompt, messages=messages, **kwargs)

    def copy(self, **kwargs: Any) -> EngineLM:
        """A copy with ``kwargs`` applied, its lm15 twin copied likewise."""
        copied: EngineLM = super().copy(**kwargs)
        copied.lm15 = self.lm15.copy(**kwargs)
        return copied
