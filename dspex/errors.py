"""The one rooted exception tree of dspex.

Every error dspex raises on purpose derives from :class:`DSPexError`, names what was wrong
and, where it helps, what to do about it::

    DSPexError
    ├── ConfigError             a configuration key has an invalid value
    ├── SignatureError          a signature string or class DSPy would not accept
    ├── InputError              a module was called with missing or ill-typed inputs
    ├── ParseError              an LM reply could not be parsed into the output fields
    ├── ModuleError             a module's implementation failed unexpectedly (cause attached)
    ├── LocalModelError         the embedded LM is not installed, corrupt, or its server failed
    ├── LMError                 the LM endpoint failed (HTTP status, malformed body, ...)
    │   ├── LMConnectionError   the endpoint could not be reached
    │   └── LMTimeout           the endpoint did not answer within the LM's timeout (a Timeout)
    ├── Timeout                 a call passed its own deadline (also a builtin TimeoutError)
    ├── Unavailable             the runtime is shutting down, stopped or failed: no new calls
    │   └── ModuleStopped       a module crashed past its restart budget and stopped alone
    ├── Overloaded              a module (or another limit) takes no more calls now; retry later
    │   └── MailboxFull         an actor's bounded mailbox is full (the actor API's error)
    ├── ActorError
    │   ├── NoProc              the target actor is not alive (or the name is unknown)
    │   ├── ActorExited         the actor exited while the call was pending
    │   ├── NameTaken           the name is registered to another live actor
    │   └── StartError          an actor's ``init`` failed
    ├── SupervisorError
    │   ├── MaxChildren         a DynamicSupervisor is at ``max_children``
    │   └── ChildNotFound       no child with that id
    └── ScriptError             a dspex.testing.ScriptedLM script is invalid, raised or ran out
"""

from __future__ import annotations

from typing import Any


class DSPexError(Exception):
    """Base class of every error dspex raises on purpose.

    ``fallback_error``: when a call failed on native, was re-run on dspy and failed there too,
    the caller gets native's error, with dspy's here (and named at the end of the message).
    """

    fallback_error: DSPexError | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled as its class, message and attributes, whatever its __init__ takes: errors
        # cross process boundaries (the dspy implementation's worker processes).
        return _rebuild, (type(self), self.args, self.__dict__)


def _rebuild(cls: type[DSPexError], args: tuple[Any, ...], attrs: dict[str, Any]) -> DSPexError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(attrs)
    return error


class ConfigError(DSPexError):
    """A configuration value is invalid; the message names the key and the allowed values."""


class SignatureError(DSPexError):
    """A signature DSPy 3.4.1 would reject (or fail on), with the position of the problem."""

    def __init__(self, message: str, *, signature: str | None = None, position: int | None = None):
        self.signature = signature
        self.position = position
        if signature is not None and position is not None:
            message = f"{message} (at position {position} in {signature!r})"
        super().__init__(message)


class InputError(DSPexError):
    """A module was called with missing, unexpected or ill-typed inputs."""


class ParseError(DSPexError):
    """The LM's reply could not be parsed into the signature's output fields.

    Raised where DSPy raises ``AdapterParseError``; carries the raw reply (``lm_response``), the
    adapter that failed (``adapter_name``) and whatever was parsed before the failure.
    """

    def __init__(
        self,
        message: str,
        *,
        adapter_name: str,
        lm_response: str | None,
        parsed_result: dict[str, Any] | None = None,
    ):
        self.adapter_name = adapter_name
        self.lm_response = lm_response
        self.parsed_result = parsed_result
        super().__init__(f"{adapter_name}: {message}")


class ModuleError(DSPexError):
    """A module's implementation raised an unexpected exception; it is this error's cause."""


class LocalModelError(DSPexError):
    """The embedded LM cannot run: a missing extra or weights (the message says which command
    installs them), weights that do not verify, or a model server that would not start."""


class LMError(DSPexError):
    """The LM endpoint failed. ``status`` is the HTTP status when there was one.
    ``context_window``: whether the endpoint said the prompt is too long for the model's
    context window, when the client judged it by the rule of DSPy's engine for the request
    (None: judge by the error's text, as LiteLLM does)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        body: str | None = None,
        context_window: bool | None = None,
    ):
        self.status = status
        self.body = body
        self.context_window = context_window
        super().__init__(message)


class LMConnectionError(LMError):
    """The LM endpoint could not be reached or dropped the connection."""


class Timeout(DSPexError, TimeoutError):
    """An operation passed its deadline: a module call its own (``execute(timeout=)`` or
    ``Config.call_timeout``; the message gives it), an actor call its ``timeout``."""


class LMTimeout(LMError, Timeout):
    """The LM endpoint did not answer within the LM's own ``timeout`` (``LM(timeout=)``), a
    limit on each request, not the call's deadline; the message says which endpoint. Also a
    :class:`Timeout`, so ``except Timeout`` catches both."""


class Unavailable(DSPexError):
    """The runtime is shutting down (draining), stopped or failed (its supervision tree gave
    up); it accepts no new calls. A call still running when the drain ends (``drain_timeout``)
    or a forced shutdown cancels it gets it too, saying so."""


class ModuleStopped(Unavailable):
    """A module stopped for good: its actor crashed more often than ``Config.max_restarts``
    within ``max_seconds``, so its supervisor stopped restarting it. The other modules keep
    serving. ``module`` is the module actor's name, ``reason`` says why it stopped (the budget
    and its last crash). Create the module again once the cause is fixed."""

    def __init__(self, module: str, reason: str):
        self.module = module
        self.reason = reason
        super().__init__(f"module {module!r} stopped: {reason}")


class Overloaded(DSPexError):
    """A capacity limit was reached and the request was not accepted; retry later.

    A module raises it when ``max_concurrency`` calls are running and ``mailbox_size`` more
    are waiting (with ``Config(overload="raise")``); the message names the module and both
    limits."""


class BudgetExceeded(DSPexError):
    """A budget of LM tokens or cost (:class:`~dspex.Budget`) is spent: the call did not send
    the LM request it was about to. The message names the budget (the runtime's, a module
    type's, or the call's own), what it allows and what was used; raise it with
    ``runtime.configure(...)`` or give the call a larger one."""


class MailboxFull(Overloaded):
    """The target actor's bounded mailbox is full (its overflow policy is ``"raise"``)."""


class ActorError(DSPexError):
    """Base class for errors about actors."""


class NoProc(ActorError):
    """The target actor is not alive, or no actor is registered under that name."""


class ActorExited(ActorError):
    """The actor exited while the call was pending; ``reason`` is its exit reason.

    When the actor crashed, ``reason`` is the exception and is also this error's ``__cause__``.
    """

    def __init__(self, actor: object, reason: object):
        self.actor = actor
        self.reason = reason
        super().__init__(f"{actor!r} exited with reason {format_reason(reason)}")
        if isinstance(reason, BaseException):
            self.__cause__ = reason


class CallingSelf(ActorError):
    """An actor's callback called (or stopped) that same actor, which would wait on itself for
    ever (OTP exits ``calling_self``). Reply directly, stop with ``Actor.stop``, or do the work
    in a task the actor owns."""


class NameTaken(ActorError):
    """The name is already registered to another live actor."""


class StartError(ActorError):
    """An actor's ``init`` raised (or timed out); ``reason`` is what it failed with."""

    def __init__(self, actor: object, reason: object):
        self.actor = actor
        self.reason = reason
        super().__init__(f"{actor} failed to start: {format_reason(reason)}")
        if isinstance(reason, BaseException):
            self.__cause__ = reason


class Ignored(StartError):
    """An actor's ``init`` called ``ignore()`` (OTP's ``:ignore``): it exited normally without
    starting. A supervisor keeps such a child's spec with no running actor."""

    def __init__(self, actor: object) -> None:
        super().__init__(actor, "ignore")


class SupervisorError(DSPexError):
    """Base class for errors a supervisor reports to the caller of its API."""


class MaxChildren(SupervisorError, Overloaded):
    """The DynamicSupervisor already has ``max_children`` children."""


class ChildNotFound(SupervisorError):
    """The supervisor has no child with that id (or ref)."""


class ScriptError(DSPexError):
    """A :class:`dspex.testing.ScriptedLM` script is invalid, raised or ran out of actions.

    An invalid script is refused when assigned. A script failing at a request makes the server
    answer it with HTTP 500; the error is raised again when the server stops, so a test does
    not pass on a misconfigured script.
    """


def format_reason(reason: object) -> str:
    """Render an exit reason for messages: exceptions as ``Type('msg')``, terms with ``repr``."""
    if isinstance(reason, BaseException):
        return f"{type(reason).__name__}({str(reason)!r})"
    return repr(reason)
