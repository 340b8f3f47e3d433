"""The dspy implementation in supervised worker processes.

Each worker is an OS process with its own event loop, running many DSPy calls at once on the
in-process dspy implementation (:mod:`dspex.backends.dspy`); a :class:`WorkerActor` in the
service owns it, and the runtime's supervisor restarts that actor (and so the process) when
the process dies. :class:`WorkerBackend` is the dspy implementation the module actors use: it
sends each call to the least busy worker, retries it once on another if its worker dies, and
keeps DSPy, LiteLLM and their memory out of the service's process. Workers are forked from
a zygote that imported DSPy once (:mod:`dspex.workers._zygote`), or run as Ray actors
(:mod:`dspex.workers._ray`); messages between the processes are msgspec-encoded
(:mod:`dspex.workers._frames`).
"""

from dspex.workers._backend import WorkerBackend
from dspex.workers._worker import WorkerActor

__all__ = ["WorkerActor", "WorkerBackend"]
