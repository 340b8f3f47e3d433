"""The native implementation: DSPy 3.4.1's adapters rebuilt for speed, byte for byte.

``ChatAdapter`` / ``JSONAdapter`` / ``XMLAdapter`` format the exact messages DSPy sends
(``format``), parse replies into the same values and types (``parse``, ``parse_completions``),
say which extra request arguments DSPy adds (``request_kwargs``) and whether DSPy would retry
with another adapter after an error (``fallback_adapter``).
Templates are built once per signature and adapter; a predictor's demos' messages once per
demos it holds (``adapter.demo_messages(sig, demos)``, which ``format`` takes in their place).

A native Predict call is therefore::

    messages = adapter.format(sig, demo_messages, inputs)
    reply = await lm(messages, **adapter.request_kwargs(sig, support))
    try:
        outputs = adapter.parse_completions(sig, reply.texts)
    except ParseError as err:
        fallback = adapter.fallback_adapter(err)
        if fallback is None:
            raise
        ...  # one more LM call with fallback.format(...) / fallback.request_kwargs(...)

The composite module types (ReAct with async tools, MultiChainComparison, BestOfN, Refine,
Parallel) are built on those predictors and send exactly the requests DSPy's modules send.
"""

from dspex.backends.native._adapters import (
    Adapter,
    ChatAdapter,
    DemoMessages,
    JSONAdapter,
    ResponseFormatSupport,
    XMLAdapter,
)
from dspex.backends.native._backend import NATIVE_MODULE_TYPES, NativeBackend
from dspex.backends.native._best_of_n import NativeBestOfN
from dspex.backends.native._multi_chain import NativeMultiChainComparison
from dspex.backends.native._parallel import NativeParallel
from dspex.backends.native._parsing import UnrecoverableParseError
from dspex.backends.native._predict import (
    NativeChainOfThought,
    NativePredict,
    check_inputs,
    make_adapter,
)
from dspex.backends.native._react import ContextWindowExceeded, NativeReAct
from dspex.backends.native._refine import NativeRefine
from dspex.backends.native._tools import NativeTool

__all__ = [
    "NATIVE_MODULE_TYPES",
    "Adapter",
    "ChatAdapter",
    "ContextWindowExceeded",
    "DemoMessages",
    "JSONAdapter",
    "NativeBackend",
    "NativeBestOfN",
    "NativeChainOfThought",
    "NativeMultiChainComparison",
    "NativeParallel",
    "NativePredict",
    "NativeReAct",
    "NativeRefine",
    "NativeTool",
    "ResponseFormatSupport",
    "UnrecoverableParseError",
    "XMLAdapter",
    "check_inputs",
    "make_adapter",
]
