"""The registry of implementations per module type, and the preference rules of the design."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from dspex.config import IMPLEMENTATIONS, Config, Implementation, implementation_name
from dspex.errors import ConfigError


class Registry:
    """Which implementations exist for each module type.

    Immutable once built; the router publishes it inside each routing snapshot.
    """

    __slots__ = ("_impls", "dspy_ready")

    def __init__(
        self,
        implementations: Mapping[str, Iterable[str]],
        dspy_ready: Callable[[], bool] | None = None,
    ):
        #: Whether the dspy implementation can take a call without a cold start (and, if not,
        #: starting it in the background); None: DSPy imported in this process.
        self.dspy_ready = dspy_ready
        self._impls: dict[str, tuple[Implementation, ...]] = {
            module_type: tuple(
                sorted({implementation_name(i) for i in impls}, key=IMPLEMENTATIONS.index)
            )
            for module_type, impls in implementations.items()
        }

    @property
    def module_types(self) -> list[str]:
        """Every registered module type."""
        return list(self._impls)

    def available_implementations(self, module_type: str) -> tuple[Implementation, ...]:
        """The implementations that exist for ``module_type`` (native first)."""
        try:
            return self._impls[module_type]
        except KeyError:
            raise ConfigError(
                f"unknown module type {module_type!r}; known: {sorted(self._impls)}"
            ) from None

    def native_available(self, module_type: str) -> bool:
        """Whether ``module_type`` has a native implementation."""
        return "native" in self.available_implementations(module_type)

    def check_forced(self, module_type: str, implementation: str | None) -> Implementation | None:
        """Normalize a forced implementation; ConfigError if it does not exist for the type."""
        if implementation is None:
            return None
        impl = implementation_name(implementation)
        available = self.available_implementations(module_type)
        if impl not in available:
            raise ConfigError(
                f"{module_type} has no {impl!r} implementation; available: {list(available)}"
            )
        return impl

    def preferred_implementation(
        self, module_type: str, config: Config, implementation: str | None = None
    ) -> Implementation | None:
        """The design's static rules, in order: a forced implementation; the module override;
        ``native_first`` / ``dspy_first`` among those available. Returns None for ``auto``
        with both available: the adaptive policy decides."""
        forced = self.check_forced(module_type, implementation)
        if forced is not None:
            return forced
        available = self.available_implementations(module_type)
        override = config.module_overrides.get(module_type)
        if override is not None and override in available:
            return override
        if len(available) == 1:
            return available[0]
        if config.implementation_preference == "native_first":
            return "native"
        if config.implementation_preference == "dspy_first":
            return "dspy"
        return None

    def validate(self, config: Config) -> None:
        """ConfigError if ``config`` names a module type that does not exist, overrides one to an
        implementation it does not have, or rolls out or shadows one without both."""
        for key in ("rollout", "shadow"):
            for module_type in getattr(config, key):
                if len(self.available_implementations(module_type)) < 2:
                    raise ConfigError(
                        f"{key}[{module_type!r}]: {module_type} has only "
                        f"{list(self.available_implementations(module_type))}; {key} needs both"
                    )
        for module_type, impl in config.module_overrides.items():
            available = self.available_implementations(module_type)
            if impl not in available:
                raise ConfigError(
                    f"module_overrides[{module_type!r}] = {impl!r}, but {module_type} has only "
                    f"{list(available)}"
                )
