"""Runtime: the actor system of an app, its router, its module supervisor and its LM client."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import itertools
import logging
import signal
import weakref
from collections.abc import Awaitable, Callable
from importlib.util import find_spec
from types import TracebackType
from typing import Any

import msgspec

from dspex._threads import SyncThreads, reset_threads, use_threads
from dspex.actors import SHUTDOWN, ActorRef, Node, is_normal_exit
from dspex.backends._spec import Backend
from dspex.backends.dspy import DSPyBackend, import_dspy
from dspex.backends.native import NativeBackend
from dspex.cache import ResponseCache
from dspex.config import Config, RayWorkers
from dspex.errors import (
    ActorError,
    ConfigError,
    DSPexError,
    ModuleStopped,
    NoProc,
    StartError,
    Unavailable,
    format_reason,
)
from dspex.lm import LM, LMClient
from dspex.lm._embedded import LocalLM, LocalLMServer, _State
from dspex.routing import (
    Configure,
    GetMetrics,
    MetricsReport,
    ModuleRestarted,
    Registry,
    RouterActor,
    RoutingSnapshot,
    SnapshotCell,
)
from dspex.supervision import (
    ChildRestarted,
    ChildRestartIntensityExceeded,
    ChildSpec,
    DynamicSupervisor,
    DynamicSupervisorRef,
    Supervisor,
    SupervisorEvent,
    SupervisorRef,
    TaskSupervisor,
    TaskSupervisorRef,
)
from dspex.workers import WorkerActor, WorkerBackend
from dspex.workers._worker import Link, WorkerSettings, WorkerSlot, WorkerStart
from dspex.workers._zygote import start_worker

log = logging.getLogger("dspex.runtime")

_current: contextvars.ContextVar[Runtime | None] = contextvars.ContextVar(
    "dspex_runtime", default=None
)
#: The runtimes running, for tasks that do not inherit the context they were entered in (a web
#: app's request handlers, when the runtime is entered in the app's lifespan).
_running: weakref.WeakSet[Runtime] = weakref.WeakSet()

ROUTER = "dspex.router"
MODULES = "dspex.modules"
WORKERS = "dspex.dspy-workers"
LOCAL_LM = "dspex.local_lm"
TASKS = "dspex.tasks"


def _require_asyncio() -> None:
    """ConfigError, naming the library, unless this runs on an asyncio event loop: dspex's LM
    client (aiohttp) and its actors are asyncio-only. anyio apps run with the asyncio backend."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        try:
            import sniffio

            library = sniffio.current_async_library()
        except Exception:  # sniffio absent, or no async library it knows
            library = "no asyncio event loop"
        raise ConfigError(
            f"dspex runs on asyncio only (its LM client, aiohttp, is asyncio-only), and this "
            f"code runs under {library}: start the app with asyncio.run(main()) or "
            'anyio.run(main, backend="asyncio"); the trio backend is not supported'
        ) from None


class Runtime:
    """The dspex runtime of one app, used as an async context manager::

        async with dspex.Runtime(lm=dspex.LM("openai/local", api_base=url)) as runtime:
            cot = await dspex.ChainOfThought.create("question -> answer")
            print((await cot(question="...")).answer)

    On entry it starts an actor system (``runtime.node``, a :class:`~dspex.actors.Node`), on
    it the root supervisor (``runtime.root``, one_for_one) and under that the router and the
    module supervisor. Actors of your own run on ``runtime.node`` (``runtime.node.spawn(...)``,
    ``dspex.Supervisor.start(runtime.node, ...)``). On exit it stops the root's tree in reverse
    start order, then any other actor still alive (newest first), each within its shutdown
    timeout, closes the LM connection pool and leaves no task of its own behind.

    ``lm`` is the default LM of modules created without one: a ``dspex.LM``, a ``dspy.LM``, or
    ``dspex.LM.local()`` to run the embedded model under the root supervisor. ``config``
    defaults to ``Config.from_env()`` (``DSPEX_*`` variables).
    """

    def __init__(
        self,
        *,
        lm: LM | LocalLM | Any = None,
        config: Config | None = None,
        shutdown_timeout: float = 5.0,
    ) -> None:
        self._node: Node | None = None
        self._local: LocalLM | None = None
        if isinstance(lm, LocalLM):
            self._local, lm = lm, None
        elif lm is not None:
            lm = LM.of(lm)
        if config is not None and not isinstance(config, Config):
            raise ConfigError(f"config must be a dspex.Config, got {type(config).__name__}")
        self.lm: LM | None = lm
        self.shutdown_timeout = shutdown_timeout
        self._initial_config = config if config is not None else Config.from_env()
        self._root: SupervisorRef | None = None
        self._token: contextvars.Token[Runtime | None] | None = None
        self._stopping: asyncio.Event | None = None
        self._signals: asyncio.Event | None = None
        self._restore_signals: list[Callable[[], None]] = []
        self._module_ids = itertools.count(1)
        self._stopped_modules: dict[str, str] = {}
        self._worker_slots: list[WorkerSlot] = []
        self.client: LMClient | None = None
        # the threads for sync user code (Config.sync_threads), made as the runtime starts
        self.threads: SyncThreads | None = None
        #: the LM response cache both implementations share (None: Config.cache turns it off)
        self.cache: ResponseCache | None = None
        self._threads_token: contextvars.Token[SyncThreads | None] | None = None
        self._state = "stopped"
        self.forcing = False
        self.backends: dict[str, Backend] = {}
        self.registry = Registry({})
        self.routing = SnapshotCell(RoutingSnapshot(0, self._initial_config, self.registry, {}, {}))

    # -- what the pieces read -------------------------------------------------------------------

    @property
    def node(self) -> Node:
        """The actor system of this runtime while it runs (a new one each time it is entered):
        spawn, call, stop and find actors by name on it. ActorError when it is not running."""
        node = self._node
        if node is None:
            raise ActorError("the runtime is not running; use `async with Runtime()` first")
        return node

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the runtime runs on; ActorError when it is not running."""
        return self.node.loop

    @property
    def tasks(self) -> TaskSupervisorRef | None:
        """The task supervisor the modules' calls run under (None while it restarts)."""
        ref = self.whereis(TASKS)
        return ref if isinstance(ref, TaskSupervisorRef) else None

    def whereis(self, name: str) -> ActorRef | None:
        """The live actor registered under ``name`` (None too when the runtime is stopped)."""
        node = self._node
        return node.whereis(name) if node is not None else None

    async def wait_for_name(self, name: str, timeout: float | None) -> ActorRef:
        """:meth:`Node.wait_for_name <dspex.actors.Node.wait_for_name>` on this runtime's node:
        the live actor registered under ``name``, waiting up to ``timeout`` seconds for one to
        register (a restarted incarnation). NoProc if none does in time (or ModuleStopped for a
        module that stopped for good meanwhile); ActorError when the runtime is not running."""
        return await self.node.wait_for_name(name, timeout)

    @property
    def root(self) -> SupervisorRef:
        """The root supervisor: children added with :meth:`start_child` live under it."""
        if self._root is None:
            raise DSPexError("the runtime is not running; use `async with Runtime()` first")
        return self._root

    @property
    def config(self) -> Config:
        """The configuration in force (changed at run time with :meth:`configure`)."""
        return self.routing.snapshot.config

    @property
    def modules(self) -> DynamicSupervisorRef:
        """The supervisor of every module actor; NoProc when it is not running."""
        ref = self.whereis(MODULES)
        if ref is None:
            raise NoProc(f"no actor is registered under the name {MODULES!r}")
        assert isinstance(ref, DynamicSupervisorRef)
        return ref

    async def _start_workers(self) -> list[WorkerSlot]:
        """Start the dspy worker processes (see :mod:`dspex.workers`), each a child of their
        own supervisor with a restart budget of its own; they take calls once DSPy is
        imported in them."""
        ref = self.whereis(WORKERS)
        if ref is None:
            raise Unavailable("the dspy workers' supervisor is not running")
        assert isinstance(ref, DynamicSupervisorRef)
        config = self.config
        where = config.dspy_workers
        start: Callable[[], Awaitable[Link]] = start_worker
        if isinstance(where, RayWorkers):
            import anyio.to_thread

            from dspex.workers._ray import connect, start_ray_worker

            count = await anyio.to_thread.run_sync(connect, where)
            start = functools.partial(start_ray_worker, where)
        else:
            count = where
        woken = asyncio.Event()
        slots = [WorkerSlot(i, woken) for i in range(count)]
        workers = config.workers
        settings = WorkerSettings(
            max_requests=workers.max_requests,
            max_rss=None if workers.max_rss_mb is None else int(workers.max_rss_mb * 1e6),
            grace=workers.grace,
        )
        self._worker_slots = slots
        for slot in slots:
            await ref.start_child(
                ChildSpec(
                    id=("dspy-worker", slot.index),
                    start=WorkerActor,
                    args=(WorkerStart(slot, settings, start, self.cache),),
                    name=f"dspex.dspy-worker.{slot.index}",
                    shutdown=10.0,
                    max_restarts=config.max_restarts,
                    max_seconds=config.max_seconds,
                )
            )
        return slots

    def _on_worker_event(self, event: SupervisorEvent) -> None:
        """A worker that crashed past its restart budget is gone for good."""
        if isinstance(event, ChildRestartIntensityExceeded):
            _, index = event.child_id
            slot = self._worker_slots[index]
            slot.gone = True
            slot.woken.set()  # the calls waiting for a worker see it
            slot.woken.clear()

    def next_module_id(self) -> int:
        """A fresh id for a module actor's name."""
        return next(self._module_ids)

    @staticmethod
    def current() -> Runtime:
        """The runtime in use here: the one entered by the current task (or by the task that
        created it), else the one running on the current event loop. So a web app's request
        handlers find the runtime entered in the app's lifespan, although their tasks do not
        inherit the lifespan's context.

        Raises DSPexError when no runtime runs here, or when several run on this event loop
        (then pass ``runtime=`` to ``create()`` or ``wrap()`` to say which).
        """
        runtime = _current.get()
        if runtime is not None and runtime.state != "stopped":
            return runtime
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # called outside any event loop
            loop = None
        here = [rt for rt in _running if loop is not None and rt.loop is loop]
        if len(here) == 1:
            return here[0]
        if here:
            raise DSPexError(
                f"{len(here)} dspex Runtimes are running on this event loop; pass runtime= to "
                "create() or wrap() to say which one the module runs in"
            )
        raise DSPexError(
            "no dspex Runtime is running here: enter `async with dspex.Runtime()` first (in a "
            "web app, in its lifespan) or pass runtime= to create() or wrap()"
        )

    # -- operations -----------------------------------------------------------------------------

    async def start_child(self, spec: ChildSpec) -> ActorRef | None:
        """Start a supervised child under the root supervisor (None if its ``init`` ignored:
        the spec is kept, with no actor running)."""
        return await self.root.start_child(spec)

    async def configure(self, **changes: Any) -> Config:
        """Change the configuration at run time (feature flags): validated by the router, then
        followed by the next calls. Returns the new configuration."""
        config: Config = await self.node.call(ROUTER, Configure(changes))
        return config

    async def metrics(self) -> MetricsReport:
        """Calls, successes, failures, fallbacks, restarts and latency percentiles per module
        type and implementation, and the state of each native circuit. After the runtime
        stopped: the final report, kept until it starts again."""
        final = self.routing.final
        if final is None or self.whereis(ROUTER) is not None:
            final = await self.node.call(ROUTER, GetMetrics())
        threads = self.threads.stats() if self.threads is not None else None
        cache = self.cache.report() if self.cache is not None else None
        report: MetricsReport = msgspec.structs.replace(final, threads=threads, cache=cache)
        return report

    def module_stopped(self, name: str) -> str | None:
        """Why the module actor registered as ``name`` stopped for good (it crashed past its
        restart budget), or None."""
        return self._stopped_modules.get(name)

    def _module_gave_up(self, event: ChildRestartIntensityExceeded) -> None:
        """A module crashed past its restart budget: remember why, for its handle, and wake the
        calls waiting for its next incarnation with the news."""
        name = event.spec.name
        assert name is not None
        reason = event.reason
        last = (
            f"its last restart failed: {format_reason(reason.reason)}"
            if isinstance(reason, StartError)
            else f"its last crash: {format_reason(reason)}"
        )
        why = (
            f"it needed more than {event.max_restarts} restarts within {event.max_seconds:g} s "
            f"(Config.max_restarts, Config.max_seconds); {last}. It is not restarted again and "
            "the other modules keep serving: create it again once the cause is fixed"
        )
        self._stopped_modules[name] = why
        self.node.fail_name_waiters(name, lambda: ModuleStopped(name, why))

    def _on_module_event(self, event: SupervisorEvent) -> None:
        """Count module actor restarts after a crash (a metric: circuits are the router's own
        business, fed by the module actors' crash reports)."""
        if isinstance(event, ChildRestartIntensityExceeded):
            self._module_gave_up(event)
            return
        router = self.whereis(ROUTER)
        if router is None or not isinstance(event, ChildRestarted):
            return
        if is_normal_exit(event.reason):
            return
        try:
            router.cast(ModuleRestarted(event.child_id[0]))
        except DSPexError:
            log.warning("router mailbox full; dropped %r", event)

    # -- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> Runtime:
        if self._node is not None:
            raise DSPexError("this Runtime is already running")
        _require_asyncio()
        config = self._initial_config
        # before any actor starts: they, and the tasks they start, inherit it
        self.threads = SyncThreads(config.sync_threads)
        self._threads_token = use_threads(self.threads)
        self._node = node = Node()
        self.forcing = False  # a forced shutdown before stays readable until now
        try:
            cache = self.cache = ResponseCache(config.cache) if config.cache.enabled else None
            pool = LMClient(max_connections=config.max_connections, cache=cache)
            self.client = await pool.__aenter__()
            local = DSPyBackend(gc_freeze=config.gc_freeze, cache=cache)
            native = NativeBackend(self.client)
            dspy = WorkerBackend(self._start_workers, local) if config.dspy_workers else local
            self.backends = {"native": native, "dspy": dspy}
            self.registry = Registry(
                {
                    module_type: [b.name for b in (native, dspy) if module_type in b.module_types]
                    for module_type in sorted(dspy.module_types | native.module_types)
                },
                dspy.ready if isinstance(dspy, WorkerBackend) else None,
            )
            self.registry.validate(config)
            if isinstance(config.dspy_workers, RayWorkers) and find_spec("ray") is None:
                raise ConfigError(
                    'dspy_workers=RayWorkers(...) needs Ray: pip install "dspex[ray]"'
                )
            if config.preload_dspy and not config.dspy_workers:
                await import_dspy(gc_freeze=config.gc_freeze)
            self.routing.snapshot = RoutingSnapshot(0, config, self.registry, {}, {})
            self.routing.final = None
            self._root = await Supervisor.start(node, [], name="dspex.root")
            if self._local is not None:
                state = _State(self._local.port)
                await self._root.start_child(
                    ChildSpec(
                        id="local-lm",
                        start=LocalLMServer,
                        args=(self._local, state),
                        name=LOCAL_LM,
                        shutdown=10.0,
                    )
                )
                assert state.port is not None
                self.lm = self._local.lm(state.port)
            await self._root.start_child(
                ChildSpec(
                    id="router",
                    start=RouterActor,
                    args=(self.registry, config, self.routing),
                    name=ROUTER,
                )
            )
            if config.dspy_workers:  # before the modules: stopped after them, once they drain
                await self._root.start_child(
                    DynamicSupervisor.child_spec(
                        "dspy-workers", on_event=self._on_worker_event, name=WORKERS
                    )
                )
            # The modules' calls run under it: started before them, stopped after they drain.
            await self._root.start_child(TaskSupervisor.child_spec("tasks", name=TASKS))
            # Each module has a restart budget of its own (Config.max_restarts in its child
            # spec): one that keeps crashing stops alone and spends none of this supervisor's.
            await self._root.start_child(
                DynamicSupervisor.child_spec(
                    "modules", on_event=self._on_module_event, name=MODULES
                )
            )
            if config.preload_dspy and isinstance(dspy, WorkerBackend):
                await dspy.preload()
        except BaseException:
            await self.shutdown()
            raise
        self._state = "running"
        self._token = _current.set(self)
        _running.add(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()

    @property
    def state(self) -> str:
        """``running``; ``failed`` when its root supervisor gave up (the router or the module
        supervisor kept crashing): its tree is gone and it serves nothing, exit it and start
        another; ``draining`` (shutting down: no new calls); or ``stopped``."""
        if self._state == "running" and not self.accepting:
            return "failed"
        return self._state

    @property
    def accepting(self) -> bool:
        """Whether module calls are accepted: the runtime is running and its tree is alive."""
        return self._state == "running" and self._root is not None and self._root.alive

    async def shutdown(self, *, force: bool = False) -> None:
        """Stop accepting calls, let the calls in flight finish (up to the configuration's
        ``drain_timeout``, then they are cancelled), stop the root tree in reverse start order,
        then any other actor, newest first; close the LM pool and the worker threads.

        ``force`` cancels the calls in flight at once instead of draining them. A shutdown
        already under way (a signal's, then the app's own exit) is waited for, not repeated.
        """
        node = self._node
        if node is None:
            return
        if force:
            self._cancel_calls(node)
        if self._stopping is not None:
            await self._stopping.wait()
            return
        self._stopping = stopping = asyncio.Event()
        self._state = "draining"
        try:
            if self._root is not None and self._root.alive:  # it may have given up already
                await node.stop(self._root, SHUTDOWN, timeout="infinity")
            await node.stop_all(self.shutdown_timeout)
            if self.client is not None:
                await self.client.aclose()
            if self.cache is not None:
                await asyncio.get_running_loop().run_in_executor(None, self.cache.close)
        finally:
            _running.discard(self)
            for restore in self._restore_signals:
                restore()
            self._restore_signals.clear()
            if self._signals is not None:
                self._signals.set()
                self._signals = None
            self._state = "stopped"
            self._stopped_modules.clear()
            self._root = None
            self._node = None
            self.client = None
            if self._threads_token is not None:
                with contextlib.suppress(ValueError):  # exited in another context
                    reset_threads(self._threads_token)
                self._threads_token = None
            if self._token is not None:
                try:
                    _current.reset(self._token)
                except ValueError:  # exited in another context than it was entered in
                    if _current.get() is self:
                        _current.set(None)
                self._token = None
            self._stopping = None
            stopping.set()

    def _cancel_calls(self, node: Node) -> None:
        """Stop draining: cancel every call in flight (their callers get Unavailable). The
        runtime stays ``forcing`` until it starts again, so those callers learn why, and
        module actors that stop from now on cancel their calls instead of draining them."""
        self.forcing = True
        tasks = self.tasks
        for task in tasks.children() if tasks is not None else ():
            task.cancel()

    def stop_on_signals(self) -> asyncio.Event:
        """Shut down on SIGINT or SIGTERM: drain the calls in flight the first time, cancel
        them the second. Returns an event set once the runtime has stopped (await it in a
        service's main); calling it again returns the same event.

        A handler installed before for these signals (a web server's: uvicorn's
        ``signal.signal`` ones, aiohttp's ``loop.add_signal_handler`` ones) is called too, at
        once, right after dspex stops taking new calls, so the server shuts down as it would
        without dspex: it stops accepting connections and waits for the requests it is serving,
        whose dspex calls drain meanwhile (up to ``drain_timeout``, then they are cancelled).
        So every request gets its answer, or an error such as ``Unavailable`` (a 503) for a
        call that came after the signal, and the server exits when the last one is done, then
        exits the runtime (which waits for the drain already under way). Calling the server's
        handler only after the drain would keep it accepting requests just to refuse them and
        delay its own shutdown by the whole drain. Python's default handlers, and the one
        ``asyncio.run`` installs for Ctrl+C (it would cancel the main task), are not called.
        When the runtime stops, the handlers from before are put back.

        Raises ActorError if the runtime is not running; call it on the main thread.
        """
        loop = self.loop
        if self._signals is not None:
            return self._signals
        stopped = self._signals = asyncio.Event()
        signals = 0
        tasks: set[asyncio.Task[None]] = set()
        previous: dict[int, Callable[[], None]] = {}

        def on_signal(sig: int) -> None:
            nonlocal signals
            signals += 1
            if signals == 1:
                log.warning("signal received: draining calls in flight (again to force)")
            else:
                log.warning("second signal: cancelling calls in flight")
            self._state = "draining"  # no new calls from now on, before the server hears of it
            task = loop.create_task(self.shutdown(force=signals > 1), name="dspex:shutdown")
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            previous[sig]()  # last: it may raise to stop the loop (aiohttp's does)

        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig], restore = _replaced_handler(loop, sig)
            self._restore_signals.append(restore)
            loop.add_signal_handler(sig, on_signal, sig)
        return stopped

    def __repr__(self) -> str:
        node = self._node
        if node is None:
            return f"<Runtime {self.state}>"
        return f"<Runtime {self.state}, {len(node.processes())} actors>"


def _replaced_handler(
    loop: asyncio.AbstractEventLoop, sig: int
) -> tuple[Callable[[], None], Callable[[], None]]:
    """The handler of ``sig`` that :meth:`Runtime.stop_on_signals` replaces, as (call it, put
    it back).

    A loop handler is read from asyncio's event loop (its private ``_signal_handlers``: there
    is no public way to read one), a Python-level one from ``signal.getsignal``. Python's
    defaults and ``asyncio.run``'s Ctrl+C handler are put back but not called.
    """
    handle: Any = getattr(loop, "_signal_handlers", {}).get(sig)  # an asyncio.Handle
    if handle is not None:
        callback, args = handle._callback, handle._args
        return handle._run, lambda: loop.add_signal_handler(sig, callback, *args)
    handler = signal.getsignal(sig)

    def restore() -> None:
        loop.remove_signal_handler(sig)
        if handler is not None:
            signal.signal(sig, handler)

    bound = handler.func if isinstance(handler, functools.partial) else handler
    runner = getattr(asyncio, "Runner", ())  # Python 3.11+: its run() sets a partial of a method
    if (
        callable(handler)
        and handler is not signal.default_int_handler
        and not isinstance(getattr(bound, "__self__", None), runner)
    ):
        return lambda: handler(sig, None), restore
    return lambda: None, restore
