"""The facades users call: ``await dspex.ChainOfThought.create(...)`` -> :class:`ModuleRef`."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec
from opentelemetry import context as otel_context

from dspex._kinds import KINDS
from dspex.actors import ActorRef, is_normal_exit
from dspex.backends._spec import NO_OPTIONS, CallOptions, ModuleSpec, PredictorState
from dspex.config import (
    Budget,
    Implementation,
    TwoStep,
    adapter_of,
    is_positive_number,
    module_type_name,
)
from dspex.errors import (
    ActorError,
    ActorExited,
    ChildNotFound,
    ConfigError,
    DSPexError,
    InputError,
    MailboxFull,
    ModuleStopped,
    NoProc,
    Overloaded,
    StartError,
    Timeout,
    Unavailable,
)
from dspex.lm import LM
from dspex.modules._actor import (
    Execute,
    GetDemos,
    Info,
    ModuleActor,
    ModuleInfo,
    ModuleStart,
    SetDemos,
    SpecBox,
    check_demos,
)
from dspex.prediction import Prediction
from dspex.signature import Signature, SignatureLike, ensure_signature
from dspex.streaming import Stream
from dspex.streaming._call import CallStream
from dspex.supervision import ChildSpec, Fallback

if TYPE_CHECKING:
    from dspex.runtime import Runtime

#: How long a call whose actor crashed waits for the restarted incarnation before giving up.
_RESTART_WAIT = 5.0


class ModuleRef:
    """A handle to one module actor, cheap to copy; it follows the actor across restarts.

    ``await module(**inputs)`` or ``await module.execute(inputs, ...)`` returns a
    :class:`~dspex.Prediction`. A crash in a call's own work fails or falls back that call
    alone (see :class:`~dspex.modules.ModuleActor`); in the rare case where the actor itself
    crashes (its state broke), the calls it was running are sent once more to the restarted
    actor (LM calls are idempotent), then fail with ``ActorExited``.
    """

    __slots__ = ("_actor", "_loop", "_runtime", "implementation", "module_type", "name")

    def __init__(
        self,
        runtime: Runtime,
        name: str,
        module_type: str,
        implementation: Implementation | None,
        actor: ActorRef,
    ):
        self._runtime = runtime
        self._loop = runtime.loop  # the clock of its deadlines: a module lives on one loop
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
        key: str | int | None = None,
        budget: Budget | None = None,
        cache: bool | None = None,
        rollout_id: int | None = None,
    ) -> Prediction:
        """Run the module on ``inputs``.

        ``implementation`` forces one for this call; ``timeout`` (seconds > 0; default: the
        runtime's ``call_timeout``) bounds the call; ``temperature`` (a number from 0 to 2),
        ``max_tokens`` and ``n`` (ints >= 1) override the LM's settings for this call; ``key``
        (a str or an int, e.g. a user or session id; ``42`` and ``"42"`` are the same key)
        keeps a canary rollout's choice the same for every call with that key. Any other value
        of these is an InputError naming it, raised before the call is routed. A module that
        crashed past its restart budget raises ModuleStopped; a runtime that is not running,
        Unavailable (as does a call the shutdown cancels: after ``drain_timeout``, or forced).
        Past its deadline the call raises Timeout; an LM that does not answer within its own
        ``timeout`` raises LMTimeout. A module running ``max_concurrency`` calls with
        ``mailbox_size`` more waiting raises Overloaded (with ``Config(overload="raise")``).
        ``budget`` (a :class:`~dspex.Budget`) limits this call's LM use; once it, the
        runtime's or the module type's budget is spent, the call raises BudgetExceeded before
        its next LM request. ``cache`` (True or False; None: the LM's ``cache``) says whether
        the call's LM requests may be answered from the runtime's response cache; a
        ``rollout_id`` (an int) keeps the call's replies apart from those of other rollout
        ids, as in DSPy (it is not sent to the LM).
        """
        msg, limit = self._message(
            inputs,
            implementation,
            timeout,
            temperature,
            max_tokens,
            n,
            key,
            None,
            budget,
            cache=cache,
            rollout_id=rollout_id,
        )
        return await self._send(msg, limit)

    def stream(
        self,
        inputs: Mapping[str, Any],
        *,
        implementation: str | None = None,
        timeout: float | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        n: int | None = None,
        key: str | int | None = None,
        budget: Budget | None = None,
        cache: bool | None = None,
        rollout_id: int | None = None,
    ) -> Stream:
        """Run the module on ``inputs`` and stream its output fields as the LM writes them:
        ``async for event in module.stream(inputs): ...`` yields
        :class:`~dspex.StreamChunk` events for every output field of every predictor (and
        :class:`~dspex.StatusMessage` events around a ReAct's tool calls), then the
        :class:`~dspex.Prediction`, as ``dspy.streamify`` with a listener on each field does.

        The options are :meth:`execute`'s, checked the same way and raising the same errors
        (InputError before anything runs); the call's own errors are raised from the
        iteration. A failure before the first chunk falls back to dspy as a call would; after
        it, the stream ends with the error (no switch of implementation mid-stream). Streams
        take the chat, JSON and XML adapters (a TwoStep module raises ConfigError), and any
        module type but Parallel (its calls return a batch: stream its module per input).
        Leaving the loop early (``break``, :meth:`Stream.aclose`, the end of ``async with``)
        or the deadline cancels the call, LM request included. A streamed request is never
        answered from the response cache, nor kept in it (its chunks come from the LM).
        """
        msg, limit = self._message(
            inputs,
            implementation,
            timeout,
            temperature,
            max_tokens,
            n,
            key,
            None,
            budget,
            cache=cache,
            rollout_id=rollout_id,
        )

        def start(events: CallStream) -> Coroutine[Any, Any, Prediction]:
            # the deadline runs from the first read: the call starts then
            deadline = self._loop.time() + limit if limit is not None else None
            return self._send(msgspec.structs.replace(msg, stream=events, deadline=deadline), limit)

        return Stream(start)

    async def _execute_into(
        self,
        stream: CallStream | None,
        budget: Budget | None,
        inputs: Mapping[str, Any],
        *,
        timeout: float | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        n: int | None = None,
        cache: bool | None = None,
        rollout_id: int | None = None,
    ) -> Prediction:
        """:meth:`execute`, its events (if ``stream``) going to ``stream``, within ``budget``:
        how a wrapped program's module streams into the program's call and spends from its
        budget."""
        msg, limit = self._message(
            inputs,
            None,
            timeout,
            temperature,
            max_tokens,
            n,
            None,
            stream,
            budget,
            cache=cache,
            rollout_id=rollout_id,
        )
        return await self._send(msg, limit)

    def _message(
        self,
        inputs: Mapping[str, Any],
        implementation: str | None,
        timeout: float | None,
        temperature: float | None,
        max_tokens: int | None,
        n: int | None,
        key: str | int | None,
        stream: CallStream | None,
        budget: Budget | None = None,
        *,
        cache: bool | None = None,
        rollout_id: int | None = None,
    ) -> tuple[Execute, float | None]:
        """The call's message, its options checked and its deadline set, and its time limit
        in seconds (None: none)."""
        rt = self._runtime
        if not rt.accepting:
            raise _refused(rt, f"{self.module_type} takes no new calls")
        if timeout is not None and not is_positive_number(timeout):
            raise InputError(
                f"timeout must be a number of seconds > 0, or None for the runtime's "
                f"call_timeout; got {timeout!r}"
            )
        if key is not None and not isinstance(key, str):
            key = _key(key)
        if budget is not None and not isinstance(budget, Budget):
            raise InputError(f"budget must be a dspex.Budget or None, got {budget!r}")
        forced = (
            None
            if implementation is None
            else rt.registry.check_forced(self.module_type, implementation)
        )
        limit = timeout if timeout is not None else rt.config.call_timeout
        deadline = self._loop.time() + limit if limit is not None else None
        options = NO_OPTIONS
        if temperature is not None or max_tokens is not None or n is not None:
            _check_lm_overrides(temperature, max_tokens, n)
            options = CallOptions(temperature=temperature, max_tokens=max_tokens, n=n)
        if cache is not None or rollout_id is not None:
            if cache is not None and not isinstance(cache, bool):
                raise InputError(f"cache must be True, False or None, got {cache!r}")
            if rollout_id is not None and (
                not isinstance(rollout_id, int) or isinstance(rollout_id, bool)
            ):
                raise InputError(f"rollout_id must be an int or None, got {rollout_id!r}")
            options = msgspec.structs.replace(options, cache=cache, rollout_id=rollout_id)
        msg = Execute(
            inputs,
            options,
            forced,
            otel_context.get_current(),
            key=key,
            deadline=deadline,
            stream=stream,
            budget=budget,
        )
        return msg, limit

    async def _send(self, msg: Execute, limit: float | None) -> Prediction:
        """Send ``msg`` to the module's live actor and wait for its answer until its deadline
        (``limit`` seconds after it was set); once more to its next incarnation if the actor
        crashed under it (unless the call streamed a chunk: it would be sent twice)."""
        rt = self._runtime
        deadline = msg.deadline
        resent = False
        try:
            while True:
                actor = self.actor
                if not actor.alive:
                    actor = await self._incarnation(deadline)
                left = None if deadline is None else max(0.0, deadline - self._loop.time())
                try:
                    result: Prediction = await actor.call(msg, timeout=left)
                    break
                except ActorExited as exc:
                    # The actor's own state broke and it crashed under this call: once more, on
                    # the restarted actor (the loop's start waits for it).
                    sent = msg.stream is not None and msg.stream.anything_sent
                    if resent or sent or is_normal_exit(exc.reason) or not rt.accepting:
                        raise
                    resent = True
        except (Timeout, ActorError, MailboxFull) as exc:
            error = self._call_error(exc, limit)
            if error is exc:
                raise
            raise error from None
        return result

    def _call_error(self, exc: DSPexError, limit: float | None) -> DSPexError:
        """What the caller of ``execute`` gets for ``exc``, in dspex's words (no actor refs):
        the call's own deadline is a Timeout saying so, no room an Overloaded naming the limits,
        a call cut by the runtime's shutdown Unavailable. Anything else, the module's own
        answers included (an LMTimeout is the LM's timeout, not the call's), is ``exc``."""
        rt = self._runtime
        if type(exc) is Timeout:  # the deadline timer of the call (or of a wait within it)
            after = f" after {limit:g} s" if limit is not None else ""
            return Timeout(
                f"{self.module_type} call timed out{after} (its deadline: execute(timeout=) or "
                "Config.call_timeout); its work, LM request included, was cancelled"
            )
        if isinstance(exc, MailboxFull):
            config = rt.config
            return Overloaded(
                f"{self.module_type} module {self.name!r} is overloaded: "
                f"{config.max_concurrency} calls running (max_concurrency) and "
                f"{config.mailbox_size} waiting (mailbox_size), so it takes no more now; retry "
                "later, raise those limits, or set Config(overload='wait') to wait for room "
                "within the call's deadline"
            )
        if isinstance(exc, (ActorExited, NoProc)) and not rt.accepting:
            if isinstance(exc, ActorExited) and exc.reason == "killed":
                return Unavailable(
                    f"the runtime stopped: this {self.module_type} call was still running "
                    f"after drain_timeout ({rt.config.drain_timeout:g} s) and was cancelled"
                )
            if isinstance(exc, ActorExited) and rt.forcing:
                return Unavailable(
                    f"the runtime stopped: this {self.module_type} call was cancelled by a "
                    "forced shutdown (shutdown(force=True) or a second signal)"
                )
            return _refused(rt, f"this {self.module_type} call was not served")
        return exc

    def _left(self, deadline: float | None) -> float:
        """Seconds left until ``deadline`` for a wait that must end (Timeout when none are)."""
        if deadline is None:
            return _RESTART_WAIT
        left = deadline - self._loop.time()
        if left <= 0:
            raise Timeout("deadline passed")
        return min(left, _RESTART_WAIT)

    async def _incarnation(self, deadline: float | None) -> ActorRef:
        """The module's live actor: the current one, else the next incarnation its supervisor
        starts, waited for until ``deadline`` (at most ``_RESTART_WAIT`` s). ModuleStopped if
        it crashed past its restart budget, NoProc if it was stopped."""
        rt = self._runtime
        actor = self.actor
        if actor.alive:
            return actor
        why = rt.module_stopped(self.name)
        if why is not None:
            raise ModuleStopped(self.name, why)
        if is_normal_exit(actor.exit_reason):  # stopped: no incarnation follows
            raise NoProc(f"{self!r} was stopped ({actor.exit_reason!r})")
        # between incarnations (a give-up meanwhile wakes this wait with ModuleStopped)
        self._actor = await rt.wait_for_name(self.name, self._left(deadline))
        return self._actor

    async def info(self) -> ModuleInfo:
        """The module's type, signature, implementations, circuit state and load; raises
        ModuleStopped if it crashed past its restart budget."""
        result: ModuleInfo = await self._ask(Info())
        return result

    async def set_demos(self, demos: Iterable[Mapping[str, Any]]) -> None:
        """Replace the module's demos; they are kept across restarts.

        Demos are checked as at ``create``: a demo that is not a mapping of field name to
        value, or that lacks every input or every output field of the signature (DSPy would
        drop it without a word), and demos a module cannot take (a module with several
        predictors, such as ReAct or a program with 2) are a ConfigError, and the module keeps
        its demos and serves on as before."""
        await self._ask(SetDemos(demos))

    async def demos(self) -> tuple[dict[str, Any], ...]:
        """The demos the module serves with now (as created, or as set since); raises
        ModuleStopped if it crashed past its restart budget."""
        demos: tuple[dict[str, Any], ...] = await self._ask(GetDemos())
        return demos

    async def _ask(self, msg: Info | SetDemos | GetDemos) -> Any:
        """A request to the module's live actor; a full mailbox is Overloaded, as for calls."""
        try:
            return await (await self._incarnation(None)).call(msg)
        except MailboxFull as exc:
            raise self._call_error(exc, None) from None

    async def stop(self) -> None:
        """Stop the module actor and remove it from its supervisor."""
        with contextlib.suppress(ChildNotFound):  # already gone
            await self._runtime.modules.terminate_child(self.actor)


def _check_lm_overrides(temperature: object, max_tokens: object, n: object) -> None:
    """InputError for a per-call LM override of the wrong type or range, naming it."""
    if temperature is not None and not (
        isinstance(temperature, (int, float))
        and not isinstance(temperature, bool)
        and 0 <= temperature <= 2
    ):
        raise InputError(
            "temperature must be a number from 0 to 2 (the range OpenAI accepts), or None for "
            f"the LM's own; got {temperature!r}"
        )
    for name, value in (("max_tokens", max_tokens), ("n", n)):
        if value is not None and not (
            isinstance(value, int) and not isinstance(value, bool) and value >= 1
        ):
            raise InputError(f"{name} must be an int >= 1, or None for the LM's own; got {value!r}")


def _key(key: object) -> str:
    """A rollout key given as an int, as a str; InputError for anything else."""
    if isinstance(key, int) and not isinstance(key, bool):
        return str(key)
    raise InputError(
        f"key must be a str or an int (e.g. a user or session id), or None; got {key!r}"
    )


def _refused(rt: Runtime, what: str) -> Unavailable:
    """The error for a call or a module the runtime cannot take (it is not running)."""
    if rt.state == "failed":
        return Unavailable(
            f"the runtime failed: its root supervisor gave up after repeated crashes of the "
            f"router or the module supervisor, so {what}; exit it and start a new one"
        )
    return Unavailable(f"the runtime is {rt.state}; {what}")


class Prepared(msgspec.Struct, frozen=True):
    """A module actor ready to start: its runtime, spec, name in metrics and forced
    implementation (see :func:`prepare_module`)."""

    rt: Runtime
    spec: ModuleSpec
    label: str
    forced: Implementation | None


def prepare_module(
    module_type: str,
    signature: SignatureLike | None,
    *,
    instructions: str | None = None,
    descriptions: Mapping[str, str] | None = None,
    demos: Iterable[Mapping[str, Any]] = (),
    lm: Any = None,
    adapter: str | TwoStep | None = None,
    implementation: str | None = None,
    runtime: Runtime | None = None,
    options: Mapping[str, Any] | None = None,
    program: Any = None,
    predictors: Mapping[str, PredictorState] | None = None,
    name: str | None = None,
) -> Prepared:
    """Check a module's arguments and build its spec; see :func:`create_module`."""
    from dspex.runtime import Runtime

    if runtime is not None and not isinstance(runtime, Runtime):
        raise ConfigError(f"runtime must be a dspex.Runtime, got {type(runtime).__name__}")
    rt = runtime if runtime is not None else Runtime.current()
    if not rt.accepting:
        raise _refused(rt, "it starts no new modules")
    forced = rt.registry.check_forced(module_type, implementation)
    wrapped = KINDS[module_type].inputs == "program"  # a dspy.Module: no signature or LM needed
    label = module_type if name is None else _module_name(name)
    sig: Signature | None = None
    if signature is not None:
        if descriptions is not None:
            if not isinstance(signature, str):
                raise ConfigError("descriptions= goes with a string signature only")
            sig = Signature.parse(signature, instructions, descriptions=descriptions)
        else:
            sig = ensure_signature(signature, instructions)
    elif not wrapped:
        raise ConfigError(f"{module_type} needs a signature, e.g. 'question -> answer'")
    model = (None if lm is None else LM.of(lm)) or rt.lm
    if model is None and not wrapped:
        raise ConfigError(f"{module_type} needs an LM: pass lm= or create the Runtime with lm=")
    chosen = adapter_of(adapter if adapter is not None else rt.config.adapter)
    spec = ModuleSpec(
        module_type=module_type,
        signature=sig,
        demos=check_demos(demos, sig),
        lm=model,
        adapter=chosen,
        options=dict(options or {}),
        program=program,
        predictors=dict(predictors or {}),
    )
    return Prepared(rt, spec, label, forced)


async def start_module(prepared: Prepared) -> ModuleRef:
    """Start a prepared module actor under the runtime's module supervisor."""
    rt, spec, label, forced = prepared.rt, prepared.spec, prepared.label, prepared.forced
    module_type = spec.module_type
    module_id = rt.next_module_id()
    actor_name = f"dspex.module.{label}.{module_id}"
    config = rt.config
    child = ChildSpec(
        id=(label, module_id),  # its supervisor events (restarts) carry the label, as metrics do
        start=ModuleActor,
        args=(ModuleStart(box=SpecBox(spec), forced=forced, context=rt, label=label),),
        name=actor_name,
        # room for a burst of as many calls as the actor accepts (it counts them itself)
        mailbox_size=config.max_concurrency + config.mailbox_size,
        overflow=config.overload,
        shutdown=config.drain_timeout,
        # a restart budget of its own: a module that keeps crashing stops alone
        max_restarts=config.max_restarts,
        max_seconds=config.max_seconds,
    )
    if rt.registry.native_available(module_type) and forced != "dspy":
        circuit = config.circuit
        start = msgspec.structs.replace(child.args[0], forced="dspy")
        on_dspy = msgspec.structs.replace(child, args=(start,))
        fallback = Fallback(spec=on_dspy, after=circuit.crash_threshold, within=circuit.window)
        child = msgspec.structs.replace(child, fallback=fallback)
    try:
        actor = await rt.modules.start_child(child)
    except StartError as exc:
        if isinstance(exc.reason, DSPexError):
            raise exc.reason from None  # the SignatureError / ConfigError itself
        raise
    assert actor is not None  # a module actor's init never ignores
    return ModuleRef(rt, actor_name, module_type, forced, actor)


async def create_module(
    module_type: str, signature: SignatureLike | None, **kwargs: Any
) -> ModuleRef:
    """Start a module actor under the runtime's module supervisor; see the facades and
    :func:`prepare_module` for the arguments. ``name`` (a wrapped program's) replaces the
    module type in metrics and spans."""
    return await start_module(prepare_module(module_type, signature, **kwargs))


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


class ModuleType:
    """Base of the facades: one per DSPy module type, each with ``create``.

    A facade names its module type; its options (``accepted``, of which ``required`` must be
    given) come from that type's record in ``dspex._kinds``."""

    module_type: ClassVar[str]
    #: Module options this type accepts; ``required`` ones must be given.
    accepted: ClassVar[tuple[str, ...]] = ()
    required: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        kind = KINDS[cls.module_type]
        cls.accepted, cls.required = kind.options, kind.required

    @classmethod
    async def create(
        cls,
        signature: SignatureLike,
        *,
        instructions: str | None = None,
        descriptions: Mapping[str, str] | None = None,
        demos: Iterable[Mapping[str, Any]] = (),
        lm: Any = None,
        adapter: str | TwoStep | None = None,
        implementation: str | None = None,
        runtime: Runtime | None = None,
        **options: Any,
    ) -> ModuleRef:
        """Start a module of this type in the current runtime and return its handle.

        ``signature``: a string (``"question -> answer"``), a dspex Signature or a dspy.Signature
        class; ``instructions`` and ``descriptions`` (field -> desc) refine a string signature.
        ``demos``: few-shot examples (dicts keyed by field name). ``lm``: a dspex.LM or dspy.LM
        (default: the runtime's). ``adapter``: ``"chat"`` (with DSPy's JSON fallback),
        ``"json"``, ``"xml"`` (with the JSON fallback too) or ``dspex.TwoStep(lm)`` (DSPy's
        TwoStepAdapter; a ``dspy.TwoStepAdapter`` too). ``implementation``: ``"native"``
        or ``"dspy"`` (``"python"``) to force one; an implementation the type lacks is a
        ConfigError here, never a silent switch.
        Module options (``tools=``, ``N=``, ...) follow; see the facade's docstring.
        """
        KINDS[cls.module_type].check_options(options)
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


class MultiChainComparison(ModuleType):
    """DSPy's ``MultiChainComparison``; calls take ``completions=[...]`` besides the inputs.
    Options: ``M`` (default 3), ``temperature`` (default 0.7)."""

    module_type = "MultiChainComparison"


class BestOfN(ModuleType):
    """DSPy's ``BestOfN`` over a Predict (or ``module="ChainOfThought"``). Options: ``N``,
    ``reward_fn(inputs, prediction) -> float``, ``threshold`` (required), ``fail_count``.
    Native runs a sync ``reward_fn`` in a worker thread and also accepts an async one."""

    module_type = "BestOfN"


class Refine(BestOfN):
    """DSPy's ``Refine``: like BestOfN, with feedback between attempts; the same options."""

    module_type = "Refine"


class Parallel(ModuleType):
    """DSPy's ``Parallel``: many inputs through one module. Call it with ``batch=[{...}, ...]``;
    the prediction's ``results`` holds, in order, a Prediction or the error of each item.
    Options: ``module`` (``"Predict"`` or ``"ChainOfThought"``), ``num_threads``."""

    module_type = "Parallel"


class ProgramOfThought(ModuleType):
    """DSPy's ``ProgramOfThought``; needs DSPy's Deno sandbox (a clear error without it).
    Options: ``max_iters`` (default 3)."""

    module_type = "ProgramOfThought"


class Module:
    """Any other ``dspy.Module``: a program whose predictors run as module actors."""

    module_type: ClassVar[str] = "Module"

    @classmethod
    async def wrap(
        cls,
        program: Any | Callable[[], Any],
        *,
        lm: Any = None,
        adapter: str | TwoStep | None = None,
        runtime: Runtime | None = None,
        name: str | None = None,
        implementation: str | None = None,
    ) -> ModuleRef:
        """Serve ``program`` (a dspy.Module, compiled or not, or a zero-argument factory of
        one, called again on each restart of the program's actor, or the
        ``"package.module:attribute"`` path of such a factory, which dspy worker processes
        import themselves); calls pass their inputs to its ``acall``/``__call__`` and return
        its Prediction.

        The program's own ``forward`` (in a worker thread) or ``aforward`` (on the loop) runs
        on a copy of it (``program`` itself is never changed) in which each ``Predict``,
        ``ChainOfThought``, ``ReAct``, ``MultiChainComparison``, ``BestOfN`` and ``Refine``
        (these two over a Predict or a ChainOfThought; over another module DSPy runs them in
        the program), however deeply nested in custom sub-modules, is a module actor of its
        own, built from its predictors' exact optimized state (signature, instructions, demos,
        LM), so routing, fallback, circuits, deadlines and metrics apply per sub-module. The
        returned :class:`~dspex.modules.ProgramRef` holds their handles in ``predictors``, by
        path (``draft.predict``, a predictor's name in DSPy's saved state; ``agent`` for a
        ReAct); metrics and spans call them ``<name>.<path>``.

        ``implementation``: None (native where it can serve a predictor, dspy for the rest),
        ``"dspy"`` (``"python"``: the whole program on DSPy, as one module) or ``"native"``
        (every predictor on native: a ConfigError names each one native cannot serve, and
        why). ``name`` (e.g. ``"qa"``) is what metrics and spans call the program (default:
        ``"Module"``); ConfigError if it is not a non-empty string or is the name of another
        module type. ``info()`` counts the demos its predictors carry (a compiled program's).
        """
        from dspex.modules._wrap import wrap_program

        return await wrap_program(
            program,
            lm=lm,
            adapter=adapter,
            runtime=runtime,
            name=name,
            implementation=implementation,
        )
