"""The facades users call: ``await dspex.ChainOfThought.create(...)`` -> :class:`ModuleRef`."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec
from opentelemetry import context as otel_context

from dspex.actors import ActorRef, is_normal_exit
from dspex.backends._spec import CallOptions, ModuleSpec
from dspex.config import (
    ADAPTERS,
    AdapterName,
    Implementation,
    is_positive_number,
    module_type_name,
)
from dspex.errors import (
    ActorExited,
    ChildNotFound,
    ConfigError,
    DSPexError,
    InputError,
    NoProc,
    StartError,
    Timeout,
    Unavailable,
    format_reason,
)
from dspex.lm import LM
from dspex.modules._actor import Execute, Info, ModuleActor, ModuleInfo, SetDemos, SpecBox
from dspex.prediction import Prediction
from dspex.signature import Signature, SignatureLike, ensure_signature
from dspex.supervision import ChildSpec, Fallback

if TYPE_CHECKING:
    from dspex.runtime import Runtime

#: How long a call whose actor crashed waits for the restarted incarnation before giving up.
_RESTART_WAIT = 5.0
#: How many times a call interrupted by crashes is retried (once only when native is forced).
_RETRIES = 3


class ModuleRef:
    """A handle to one module actor, cheap to copy; it follows the actor across restarts.

    ``await module(**inputs)`` or ``await module.execute(inputs, ...)`` returns a
    :class:`~dspex.Prediction`. A call in flight when the actor crashed is retried once on the
    restarted actor (LM calls are idempotent), on dspy when fallback is allowed and native is not
    forced (the prediction says so), then fails with ``ActorExited``.
    """

    __slots__ = ("_actor", "_runtime", "implementation", "module_type", "name")

    def __init__(
        self,
        runtime: Runtime,
        name: str,
        module_type: str,
        implementation: Implementation | None,
        actor: ActorRef,
    ):
        self._runtime = runtime
        self._actor = actor
        self.name = name
        self.module_type = module_type
        self.implementation = implementation

    def __repr__(self) -> str:
        forced = f", implementation={self.implementation!r}" if self.implementation else ""
        return f"<{self.module_type} module {self.name!r}{forced}>"

    @property
    def actor(self) -> ActorRef:
        """The current incarnation of the module's actor."""
        if not self._actor.alive:
            ref = self._runtime.whereis(self.name)
            if ref is not None:
                self._actor = ref
        return self._actor

    def __call__(self, **inputs: Any) -> Coroutine[Any, Any, Prediction]:
        """Run the module on keyword inputs: ``await module(question=...)``."""
        return self.execute(inputs)  # no coroutine of its own: one frame less per call in flight

    async def execute(
        self,
        inputs: Mapping[str, Any],
        *,
        implementation: str | None = None,
        timeout: float | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        n: int | None = None,
        key: str | None = None,
    ) -> Prediction:
        """Run the module on ``inputs``.

        ``implementation`` forces one for this call; ``timeout`` (seconds; default: the runtime's
        ``call_timeout``) bounds the call; ``temperature``, ``max_tokens`` and ``n`` override
        the LM's settings for this call; ``key`` (e.g. a user or session id) keeps a canary
        rollout's choice the same for every call with that key. A ``timeout`` that is not a
        number of seconds > 0 is an InputError, raised before the call is routed.
        """
        rt = self._runtime
        if not rt.accepting:
            raise Unavailable(f"the runtime is {rt.state}; {self.module_type} takes no new calls")
        if timeout is not None and not is_positive_number(timeout):
            raise InputError(
                f"timeout must be a number of seconds > 0, or None for the runtime's "
                f"call_timeout; got {timeout!r}"
            )
        forced = rt.registry.check_forced(self.module_type, implementation)
        msg = Execute(
            inputs,
            CallOptions(temperature=temperature, max_tokens=max_tokens, n=n),
            forced,
            otel_context.get_current(),
            key=key,
        )
        limit = timeout if timeout is not None else rt.config.call_timeout
        deadline = rt.loop.time() + limit if limit is not None else None
        # A retry after a crash runs on dspy when allowed, which cannot crash the actor: if
        # another call's crash interrupts it, it is not this call's fault and it may go again.
        retries = 1 if (forced or self.implementation) == "native" else _RETRIES
        try:
            attempt = 0
            while True:
                actor = self.actor
                if not actor.alive:
                    if is_normal_exit(actor.exit_reason):  # stopped: no incarnation follows
                        raise NoProc(f"{self!r} was stopped ({actor.exit_reason!r})")
                    # between incarnations
                    actor = self._actor = await rt.wait_for_name(self.name, self._left(deadline))
                left = None if deadline is None else max(0.0, deadline - rt.loop.time())
                try:
                    result: Prediction = await actor.call(msg, timeout=left)
                    break
                except ActorExited as exc:
                    attempt += 1
                    if is_normal_exit(exc.reason) or not rt.accepting or attempt > retries:
                        raise
                    if attempt > 1 and not rt.config.allow_fallback:
                        raise
                    try:  # once more, on the restarted actor
                        self._actor = await rt.wait_for_name(self.name, self._left(deadline))
                    except NoProc:
                        raise exc from None
                    msg = msgspec.structs.replace(msg, crashed=format_reason(exc.reason))
        except Timeout:
            raise Timeout(
                f"{self.module_type} call timed out after {limit:g} s; its work, LM request "
                "included, was cancelled"
            ) from None
        return result

    def _left(self, deadline: float | None) -> float:
        """Seconds left until ``deadline`` for a wait that must end (Timeout when none are)."""
        if deadline is None:
            return _RESTART_WAIT
        left = deadline - self._runtime.loop.time()
        if left <= 0:
            raise Timeout("deadline passed")
        return min(left, _RESTART_WAIT)

    async def info(self) -> ModuleInfo:
        """The module's type, signature, implementations, circuit state and load."""
        result: ModuleInfo = await self.actor.call(Info())
        return result

    async def set_demos(self, demos: Iterable[Mapping[str, Any]]) -> None:
        """Replace the module's demos; they are kept across restarts."""
        await self.actor.call(SetDemos(_demos(demos)))

    async def stop(self) -> None:
        """Stop the module actor and remove it from its supervisor."""
        with contextlib.suppress(ChildNotFound):  # already gone
            await self._runtime.modules.terminate_child(self.actor)


def _demos(demos: Iterable[Mapping[str, Any]]) -> tuple[dict[str, Any], ...]:
    out = []
    for i, demo in enumerate(demos):
        if not isinstance(demo, Mapping):
            raise InputError(f"demos[{i}] must be a mapping of field name to value, got {demo!r}")
        out.append(dict(demo))
    return tuple(out)


def _as_lm(lm: Any) -> LM | None:
    if lm is None or isinstance(lm, LM):
        return lm
    if hasattr(lm, "model") and hasattr(lm, "kwargs"):  # a dspy.LM
        return LM.from_dspy(lm)
    raise ConfigError(f"lm must be a dspex.LM or a dspy.LM, got {type(lm).__name__}")


async def create_module(
    module_type: str,
    signature: SignatureLike | None,
    *,
    instructions: str | None = None,
    descriptions: Mapping[str, str] | None = None,
    demos: Iterable[Mapping[str, Any]] = (),
    lm: Any = None,
    adapter: str | None = None,
    implementation: str | None = None,
    runtime: Runtime | None = None,
    options: Mapping[str, Any] | None = None,
    program: Any = None,
    name: str | None = None,
) -> ModuleRef:
    """Start a module actor under the runtime's module supervisor; see the facades.

    ``name`` (a wrapped program's) replaces the module type in metrics and spans."""
    from dspex.runtime import Runtime

    if runtime is not None and not isinstance(runtime, Runtime):
        raise ConfigError(f"runtime must be a dspex.Runtime, got {type(runtime).__name__}")
    rt = runtime if runtime is not None else Runtime.current()
    if not rt.accepting:
        raise Unavailable(f"the runtime is {rt.state}; it starts no new modules")
    forced = rt.registry.check_forced(module_type, implementation)
    label = module_type if name is None else _module_name(name)
    sig: Signature | None = None
    if signature is not None:
        if descriptions is not None:
            if not isinstance(signature, str):
                raise ConfigError("descriptions= goes with a string signature only")
            sig = Signature.parse(signature, instructions, descriptions=descriptions)
        else:
            sig = ensure_signature(signature, instructions)
    elif module_type != "Module":
        raise ConfigError(f"{module_type} needs a signature, e.g. 'question -> answer'")
    model = _as_lm(lm) or rt.lm
    if model is None and module_type != "Module":
        raise ConfigError(f"{module_type} needs an LM: pass lm= or create the Runtime with lm=")
    chosen = adapter if adapter is not None else rt.config.adapter
    if chosen not in ADAPTERS:
        raise ConfigError(f"adapter must be one of 'chat', 'json', got {chosen!r}")
    spec = ModuleSpec(
        module_type=module_type,
        signature=sig,
        demos=_demos(demos),
        lm=model,
        adapter=_adapter_name(chosen),
        options=dict(options or {}),
        program=program,
    )
    module_id = rt.next_module_id()
    actor_name = f"dspex.module.{label}.{module_id}"
    config = rt.config
    child = ChildSpec(
        id=(module_type, module_id),
        start=ModuleActor,
        args=(SpecBox(spec), forced, rt, label),
        name=actor_name,
        mailbox_size=config.mailbox_size,
        overflow=config.overload,
        shutdown=config.drain_timeout,
    )
    if rt.registry.native_available(module_type) and forced != "dspy":
        circuit = config.circuit
        fallback = Fallback(spec=child, after=circuit.crash_threshold, within=circuit.window)
        child = msgspec.structs.replace(child, fallback=fallback)
    try:
        actor = await rt.modules.start_child(child)
    except StartError as exc:
        if isinstance(exc.reason, DSPexError):
            raise exc.reason from None  # the SignatureError / ConfigError itself
        raise
    return ModuleRef(rt, actor_name, module_type, forced, actor)


def _module_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"name must be a non-empty string, e.g. name='qa', got {name!r}")
    try:
        taken = module_type_name(name) != "Module"  # a module type's name, in any spelling
    except ConfigError:
        taken = False
    if taken:
        raise ConfigError(
            f"name={name!r} is a module type's name: its metrics would mix with that type's; "
            "choose another, e.g. name='qa'"
        )
    return name


def _adapter_name(name: str) -> AdapterName:
    return "json" if name == "json" else "chat"


class ModuleType:
    """Base of the facades: one per DSPy module type, each with ``create``."""

    module_type: ClassVar[str]
    #: Module options this type accepts; ``required`` ones must be given.
    accepted: ClassVar[tuple[str, ...]] = ()
    required: ClassVar[tuple[str, ...]] = ()

    @classmethod
    async def create(
        cls,
        signature: SignatureLike,
        *,
        instructions: str | None = None,
        descriptions: Mapping[str, str] | None = None,
        demos: Iterable[Mapping[str, Any]] = (),
        lm: Any = None,
        adapter: str | None = None,
        implementation: str | None = None,
        runtime: Runtime | None = None,
        **options: Any,
    ) -> ModuleRef:
        """Start a module of this type in the current runtime and return its handle.

        ``signature``: a string (``"question -> answer"``), a dspex Signature or a dspy.Signature
        class; ``instructions`` and ``descriptions`` (field -> desc) refine a string signature.
        ``demos``: few-shot examples (dicts keyed by field name). ``lm``: a dspex.LM or dspy.LM
        (default: the runtime's). ``adapter``: ``"chat"`` (with DSPy's JSON fallback) or
        ``"json"``. ``implementation``: ``"native"`` or ``"dspy"`` (``"python"``) to force one;
        an implementation the type lacks is a ConfigError here, never a silent switch.
        Module options (``tools=``, ``N=``, ...) follow; see the facade's docstring.
        """
        unknown = sorted(set(options) - set(cls.accepted))
        if unknown:
            accepted = ", ".join(cls.accepted) or "none"
            raise ConfigError(
                f"{cls.module_type} got unknown option(s) {unknown}; it accepts: {accepted}"
            )
        missing = [name for name in cls.required if name not in options]
        if missing:
            raise ConfigError(f"{cls.module_type} needs the option(s) {missing}")
        return await create_module(
            cls.module_type,
            signature,
            instructions=instructions,
            descriptions=descriptions,
            demos=demos,
            lm=lm,
            adapter=adapter,
            implementation=implementation,
            runtime=runtime,
            options=options,
        )


class Predict(ModuleType):
    """DSPy's ``Predict``: one LM call from the signature's inputs to its outputs."""

    module_type = "Predict"


class ChainOfThought(ModuleType):
    """DSPy's ``ChainOfThought``: Predict with a ``reasoning`` output before the others."""

    module_type = "ChainOfThought"


class ReAct(ModuleType):
    """DSPy's ``ReAct`` agent. Options: ``tools`` (required: Python callables, sync or async,
    or ``dspy.Tool`` objects; native runs sync tools in worker threads), ``max_iters`` (default
    20). The prediction holds the ``trajectory`` dict, ``reasoning`` and the outputs."""

    module_type = "ReAct"
    accepted = ("tools", "max_iters")
    required = ("tools",)


class MultiChainComparison(ModuleType):
    """DSPy's ``MultiChainComparison``; calls take ``completions=[...]`` besides the inputs.
    Options: ``M`` (default 3), ``temperature`` (default 0.7)."""

    module_type = "MultiChainComparison"
    accepted = ("M", "temperature")


class BestOfN(ModuleType):
    """DSPy's ``BestOfN`` over a Predict (or ``module="ChainOfThought"``). Options: ``N``,
    ``reward_fn(inputs, prediction) -> float``, ``threshold`` (required), ``fail_count``.
    Native runs a sync ``reward_fn`` in a worker thread and also accepts an async one."""

    module_type = "BestOfN"
    accepted = ("N", "reward_fn", "threshold", "fail_count", "module")
    required = ("N", "reward_fn", "threshold")


class Refine(BestOfN):
    """DSPy's ``Refine``: like BestOfN, with feedback between attempts; the same options."""

    module_type = "Refine"


class Parallel(ModuleType):
    """DSPy's ``Parallel``: many inputs through one module. Call it with ``batch=[{...}, ...]``;
    the prediction's ``results`` holds, in order, a Prediction or the error of each item.
    Options: ``module`` (``"Predict"`` or ``"ChainOfThought"``), ``num_threads``."""

    module_type = "Parallel"
    accepted = ("module", "num_threads")


class ProgramOfThought(ModuleType):
    """DSPy's ``ProgramOfThought``; needs DSPy's Deno sandbox (a clear error without it).
    Options: ``max_iters`` (default 3)."""

    module_type = "ProgramOfThought"
    accepted = ("max_iters",)


class Module:
    """Any other ``dspy.Module``, run as a supervised actor on the dspy implementation."""

    module_type: ClassVar[str] = "Module"

    @classmethod
    async def wrap(
        cls,
        program: Any | Callable[[], Any],
        *,
        lm: Any = None,
        adapter: str | None = None,
        runtime: Runtime | None = None,
        name: str | None = None,
    ) -> ModuleRef:
        """Run ``program`` (a dspy.Module, or a factory of one, called again on each restart)
        as a module actor; calls pass their inputs to its ``acall``/``__call__``.

        ``name`` (e.g. ``"qa"``) is what metrics and spans call it (default: ``"Module"``, for
        every wrapped program); ConfigError if it is not a non-empty string or is the name of
        another module type. ``info()`` counts the demos its predictors carry (a compiled
        program's)."""
        return await create_module(
            "Module", None, lm=lm, adapter=adapter, runtime=runtime, program=program, name=name
        )
