"""Routing: the registry of implementations, the router actor, metrics and the per-call choice."""

from dspex.routing._policy import (
    Circuit,
    CircuitState,
    RouteReason,
    RoutingSnapshot,
    canary_share,
    choose,
)
from dspex.routing._registry import Registry
from dspex.routing._router import (
    ClaimProbe,
    Configure,
    Divergence,
    GetMetrics,
    ImplementationMetrics,
    MetricsReport,
    ModuleRestarted,
    NativeCrashed,
    Outcome,
    ProbeAbandoned,
    RouterActor,
    ShadowReport,
    ShadowResult,
    SnapshotCell,
    UsageReport,
)

__all__ = [
    "Circuit",
    "CircuitState",
    "ClaimProbe",
    "Configure",
    "Divergence",
    "GetMetrics",
    "ImplementationMetrics",
    "MetricsReport",
    "ModuleRestarted",
    "NativeCrashed",
    "Outcome",
    "ProbeAbandoned",
    "Registry",
    "RouteReason",
    "RouterActor",
    "RoutingSnapshot",
    "ShadowReport",
    "ShadowResult",
    "SnapshotCell",
    "UsageReport",
    "canary_share",
    "choose",
]
