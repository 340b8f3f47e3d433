"""``chaos(script, ...)``: a ScriptedLM script that misbehaves at given rates, reproducibly."""

from __future__ import annotations

import random
from collections.abc import Awaitable

from dspex.errors import ConfigError
from dspex.testing._actions import (
    Action,
    ActionLike,
    Drop,
    Hang,
    Malformed,
    RecordedRequest,
    Reply,
    Status,
    Step,
    check_step,
)


class Chaos:
    """A ScriptedLM script that misbehaves at given rates; see :func:`chaos`."""

    def __init__(self, script: Step, rates: dict[str, float], status: int, seed: int | None):
        for name, rate in rates.items():
            if not 0 <= rate <= 1:
                raise ConfigError(f"{name}_rate must be in [0, 1], got {rate!r}")
        if sum(rates.values()) > 1:
            raise ConfigError("the chaos rates must add up to at most 1")
        self.script = check_step(script)
        self.rates = rates
        self.faults: dict[str, Action] = {
            "error": Status(status, message="injected by chaos()"),
            "hang": Hang(),
            "drop": Drop(),
            "malformed": Malformed(),
            "unparsable": Reply("I will not follow any format."),
        }
        self.random = random.Random(seed)
        #: How many of each fault were injected so far.
        self.counts = dict.fromkeys(rates, 0)

    def __call__(self, request: RecordedRequest) -> ActionLike | Awaitable[ActionLike]:
        roll, edge = self.random.random(), 0.0
        for name, rate in self.rates.items():
            edge += rate
            if roll < edge:
                self.counts[name] += 1
                return self.faults[name]
        return self.script(request) if callable(self.script) else self.script


def chaos(
    script: Step,
    *,
    error_rate: float = 0.0,
    status: int = 503,
    hang_rate: float = 0.0,
    drop_rate: float = 0.0,
    malformed_rate: float = 0.0,
    unparsable_rate: float = 0.0,
    seed: int | None = None,
) -> Chaos:
    """Wrap ``script`` (an action, a reply text or a function of the request) so that each
    request, with these probabilities, gets instead: HTTP ``status`` (``error_rate``), no
    answer at all (``hang_rate``), a closed connection (``drop_rate``), a body that is not JSON
    (``malformed_rate``) or a well-formed reply no adapter can parse (``unparsable_rate``).

    The choices come from ``random.Random(seed)`` in arrival order, so a run can be replayed;
    ``counts`` on the result tells what was injected. Raises :class:`~dspex.errors.ConfigError`
    for a rate outside [0, 1] or rates adding up to more than 1, and
    :class:`~dspex.errors.ScriptError` when ``script`` is not a step.
    """
    rates = {
        "error": error_rate,
        "hang": hang_rate,
        "drop": drop_rate,
        "malformed": malformed_rate,
        "unparsable": unparsable_rate,
    }
    return Chaos(script, rates, status, seed)
