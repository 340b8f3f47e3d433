"""The published routing snapshot and the per-call choice made from it (no message hop)."""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable
from typing import Literal

import msgspec

from dspex._dspy_import import loaded, warm
from dspex.config import Config, Implementation
from dspex.routing._registry import Registry

CircuitState = Literal["closed", "open", "half_open"]

#: Why an implementation was chosen; recorded on the ``dspex.route`` span.
RouteReason = Literal[
    "forced",
    "override",
    "only",
    "preference",
    "adaptive",
    "explore",
    "circuit_open",
    "probe",
    "canary",
]


def canary_share(module_type: str, key: str) -> float:
    """Where a request key falls in [0, 100): the same key always lands on the same side."""
    return zlib.crc32(f"{module_type}\x00{key}".encode()) % 10_000 / 100


class Circuit(msgspec.Struct, frozen=True):
    """The native circuit of one module type while it is not closed; immutable, like the
    snapshot that holds it: only the router creates and replaces circuits.

    ``open`` until ``until`` (loop time); then ``half_open``: the router grants one call the
    probe (see :class:`~dspex.routing.ClaimProbe`) and publishes the circuit with ``probing``
    set, so every other call keeps going to dspy until the probe's outcome closes or reopens it.
    """

    opened_at: float
    until: float
    probing: bool = False

    def state(self, now: float) -> CircuitState:
        """``open`` before the cool-down ends, ``half_open`` after."""
        return "open" if now < self.until else "half_open"

    def probe_due(self, now: float) -> bool:
        """Whether a call may ask the router for the probe: the cool-down is over and no probe
        was granted yet."""
        return now >= self.until and not self.probing


class RoutingSnapshot:
    """What the router publishes for readers: immutable (its circuits too).

    Module actors read the current snapshot directly from the runtime (as ETS or
    persistent_term in OTP); the router replaces it whenever config, circuits or the adaptive
    leader change.
    """

    __slots__ = ("adaptive", "circuits", "config", "registry", "routes", "version")

    def __init__(
        self,
        version: int,
        config: Config,
        registry: Registry,
        adaptive: dict[str, Implementation],
        circuits: dict[str, Circuit],
    ):
        self.version = version
        self.config = config
        self.registry = registry
        self.adaptive = adaptive
        self.circuits = circuits
        #: Each module type's static route, worked out once per snapshot rather than per call:
        #: (the implementation, why) from an override, a single implementation or the
        #: preference; (None, "canary") under a rollout; (None, "adaptive") under ``auto``.
        self.routes: dict[str, tuple[Implementation | None, RouteReason]] = {
            module_type: _static_route(registry, config, module_type)
            for module_type in registry.module_types
        }

    def circuit_state(self, module_type: str, now: float) -> CircuitState:
        circuit = self.circuits.get(module_type)
        return "closed" if circuit is None else circuit.state(now)


def explore(
    leader: Implementation, gc_freeze: bool, ready: Callable[[], bool] | None = None
) -> tuple[Implementation, RouteReason]:
    """Where an exploring call goes under ``auto``: to the implementation that is not the
    ``leader``, but to dspy only once DSPy is loaded. Until then the call stays on native
    (reason ``"adaptive"``) and DSPy's import starts in the background, once, never blocking
    the event loop (``gc_freeze`` as ``Config.gc_freeze``): a cold import, seconds long, would
    otherwise hold up the live call that explores first. ``ready`` says the same of the dspy
    worker processes (and starts them), when DSPy runs there instead."""
    if leader == "dspy":
        return "native", "explore"
    if ready is not None:  # the dspy worker processes: started, not imported, if not ready
        return ("dspy", "explore") if ready() else ("native", "adaptive")
    if loaded(gc_freeze=gc_freeze) is None:
        warm(gc_freeze=gc_freeze)
        return "native", "adaptive"
    return "dspy", "explore"


def choose(
    snapshot: RoutingSnapshot,
    module_type: str,
    forced: Implementation | None,
    now: float,
    rand: Callable[[], float] = random.random,
    key: str | None = None,
    label: str | None = None,
) -> tuple[Implementation, RouteReason]:
    """Pick the implementation for one call, following the design's rules in order.

    A forced implementation wins; then a module override; then a canary rollout (its
    percentage of calls to native; sticky by request ``key`` when one is given); then a single
    implementation, or the ``native_first``/``dspy_first`` preference; ``auto`` follows the
    adaptive leader and explores the other at ``explore_rate`` (dspy once DSPy is loaded: see
    :func:`explore`). Native is never chosen while its circuit is open, except by force; after
    the cool-down a call may probe it: the reason ``"probe"`` means the caller must first claim
    the probe from the router, which grants it to one call (the others go to dspy).

    Configuration (overrides, rollouts, preference) is per ``module_type``; what the router
    learns from outcomes (the adaptive leader, the native circuit) is per ``label``, the name
    the module reports under (its type, or ``qa.draft.predict`` for a wrapped program's
    predictor; default: the type).
    """
    live = module_type if label is None else label
    if forced is not None:
        return forced, "forced"
    route = snapshot.routes.get(module_type)
    impl, reason = (
        route
        if route is not None
        else _static_route(
            snapshot.registry,
            snapshot.config,
            module_type,  # an unknown type: its ConfigError
        )
    )
    if reason == "canary":
        rollout = snapshot.config.rollout[module_type]
        share = canary_share(module_type, key) if key is not None else rand() * 100
        impl = "native" if share < rollout.native_percent else "dspy"
    elif impl is None:
        impl = snapshot.adaptive.get(live, "native")
        if rand() < snapshot.config.adaptive.explore_rate:
            impl, reason = explore(impl, snapshot.config.gc_freeze, snapshot.registry.dspy_ready)
    if impl == "native":
        circuit = snapshot.circuits.get(live)
        if circuit is not None:
            if circuit.probe_due(now):
                return "native", "probe"
            if "dspy" in snapshot.registry.available_implementations(module_type):
                return "dspy", "circuit_open"
    return impl, reason


def _static_route(
    registry: Registry, config: Config, module_type: str
) -> tuple[Implementation | None, RouteReason]:
    """The part of a module type's route that depends on the snapshot alone (see
    ``RoutingSnapshot.routes``); ConfigError for an unknown module type."""
    preferred = registry.preferred_implementation(module_type, config)
    if module_type in config.rollout and module_type not in config.module_overrides:
        return None, "canary"
    if preferred is None:
        return None, "adaptive"
    if module_type in config.module_overrides:
        return preferred, "override"
    if len(registry.available_implementations(module_type)) == 1:
        return preferred, "only"
    return preferred, "preference"
