"""The published routing snapshot and the per-call choice made from it (no message hop)."""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable
from typing import Literal

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
    "retry_after_crash",
    "canary",
]


def canary_share(module_type: str, key: str) -> float:
    """Where a request key falls in [0, 100): the same key always lands on the same side."""
    return zlib.crc32(f"{module_type}\x00{key}".encode()) % 10_000 / 100


class Circuit:
    """The native circuit of one module type while it is not closed.

    ``open`` until ``until`` (loop time); then ``half_open``: exactly one caller may
    :meth:`claim_probe` and try native. Only the router creates and replaces circuits.
    """

    __slots__ = ("_probing", "opened_at", "until")

    def __init__(self, opened_at: float, until: float):
        self.opened_at = opened_at
        self.until = until
        self._probing = False

    def state(self, now: float) -> CircuitState:
        """``open`` before the cool-down ends, ``half_open`` after."""
        return "open" if now < self.until else "half_open"

    @property
    def probing(self) -> bool:
        """Whether a probe call was let through to native."""
        return self._probing

    def claim_probe(self, now: float) -> bool:
        """True for the first caller after the cool-down: it runs the probe call on native."""
        if now < self.until or self._probing:
            return False
        self._probing = True
        return True


class RoutingSnapshot:
    """What the router publishes for readers: immutable but for the probe claim of a circuit.

    Module actors read the current snapshot directly from the runtime (as ETS or
    persistent_term in OTP); the router replaces it whenever config, circuits or the adaptive
    leader change.
    """

    __slots__ = ("adaptive", "circuits", "config", "registry", "version")

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

    def circuit_state(self, module_type: str, now: float) -> CircuitState:
        circuit = self.circuits.get(module_type)
        return "closed" if circuit is None else circuit.state(now)


def choose(
    snapshot: RoutingSnapshot,
    module_type: str,
    forced: Implementation | None,
    now: float,
    rand: Callable[[], float] = random.random,
    key: str | None = None,
) -> tuple[Implementation, RouteReason]:
    """Pick the implementation for one call, following the design's rules in order.

    A forced implementation wins; then a module override; then a canary rollout (its
    percentage of calls to native; sticky by request ``key`` when one is given); then a single
    implementation, or the ``native_first``/``dspy_first`` preference; ``auto`` follows the
    adaptive leader and explores the other at ``explore_rate``. Native is never chosen while its
    circuit is open, except by force; after the cool-down one call probes it.
    """
    if forced is not None:
        return forced, "forced"
    registry, config = snapshot.registry, snapshot.config
    preferred = registry.preferred_implementation(module_type, config)
    rollout = config.rollout.get(module_type)
    reason: RouteReason
    if rollout is not None and module_type not in config.module_overrides:
        share = canary_share(module_type, key) if key is not None else rand() * 100
        impl: Implementation = "native" if share < rollout.native_percent else "dspy"
        reason = "canary"
    elif preferred is not None:
        impl = preferred
        if module_type in config.module_overrides:
            reason = "override"
        elif len(registry.available_implementations(module_type)) == 1:
            reason = "only"
        else:
            reason = "preference"
    else:
        impl = snapshot.adaptive.get(module_type, "native")
        reason = "adaptive"
        if rand() < config.adaptive.explore_rate:
            impl = "dspy" if impl == "native" else "native"
            reason = "explore"
    if impl == "native":
        circuit = snapshot.circuits.get(module_type)
        if circuit is not None:
            if circuit.claim_probe(now):
                return "native", "probe"
            if "dspy" in registry.available_implementations(module_type):
                return "dspy", "circuit_open"
    return impl, reason
