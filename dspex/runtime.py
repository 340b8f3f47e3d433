"""Runtime: the actor system of an app, with a root supervisor and an orderly shutdown."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from types import TracebackType

from dspex.actors import ActorRef, Node
from dspex.errors import DSPexError
from dspex.supervision import ChildSpec, Supervisor, SupervisorRef

log = logging.getLogger("dspex.runtime")

_current: contextvars.ContextVar[Runtime | None] = contextvars.ContextVar(
    "dspex_runtime", default=None
)


class Runtime(Node):
    """The actor system of one app, used as an async context manager::

        async with dspex.Runtime() as runtime:
            ref = await runtime.spawn(Counter)
            await ref.call("incr")

    On entry it starts the root supervisor (``runtime.root``, one_for_one); on exit it stops the
    root's tree in reverse start order, then any other actor still alive (newest first), each
    within its shutdown timeout, and leaves no task of its own behind.
    """

    def __init__(self, *, shutdown_timeout: float = 5.0) -> None:
        super().__init__()
        self.shutdown_timeout = shutdown_timeout
        self._root: SupervisorRef | None = None
        self._token: contextvars.Token[Runtime | None] | None = None

    @property
    def root(self) -> SupervisorRef:
        """The root supervisor: children added with :meth:`start_child` live under it."""
        if self._root is None:
            raise DSPexError("the runtime is not running; use `async with Runtime()` first")
        return self._root

    @staticmethod
    def current() -> Runtime:
        """The runtime entered by the current task (or the task that created it)."""
        runtime = _current.get()
        if runtime is None:
            raise DSPexError("no dspex Runtime is running here; use `async with dspex.Runtime()`")
        return runtime

    async def start_child(self, spec: ChildSpec) -> ActorRef:
        """Start a supervised child under the root supervisor."""
        return await self.root.start_child(spec)

    async def __aenter__(self) -> Runtime:
        if self._loop is not None:
            raise DSPexError("this Runtime is already running")
        self._loop = asyncio.get_running_loop()
        self._root = await Supervisor.start(self, [], name="dspex.root")
        self._token = _current.set(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()

    async def shutdown(self) -> None:
        """Stop everything: the root tree first, then the remaining actors, newest first."""
        if self._loop is None:
            return
        try:
            if self._root is not None:
                await self.shutdown_process(self._root._proc, "infinity")
            await self._stop_all(self.shutdown_timeout)
        finally:
            self._root = None
            self._loop = None
            if self._token is not None:
                try:
                    _current.reset(self._token)
                except ValueError:  # exited in another context than it was entered in
                    if _current.get() is self:
                        _current.set(None)
                self._token = None

    def __repr__(self) -> str:
        state = "running" if self._loop is not None else "stopped"
        return f"<Runtime {state}, {len(self._procs)} actors>"
