"""Routing: the registry of implementations, the router actor, metrics and the per-call choice."""

from dspex.routing._policy import Circuit, CircuitState, RouteReason, RoutingSnapshot, choose
from dspex.routing._registry import Registry
from dspex.routing._router import (
    Configure,
    GetMetrics,
    ImplementationMetrics,
    MetricsReport,
    NativeCrashed,
    OpenCircuit,
    Outcome,
    RouterActor,
    SnapshotCell,
)

__all__ = [
    "Circuit",
    "CircuitState",
    "Configure",
    "GetMetrics",
    "ImplementationMetrics",
    "MetricsReport",
    "NativeCrashed",
    "OpenCircuit",
    "Outcome",
    "Registry",
    "RouteReason",
    "RouterActor",
    "RoutingSnapshot",
    "SnapshotCell",
    "choose",
]
