"""Budgets of LM use: what the runtime and each module type have spent (written by the router
alone, from the outcomes module actors cast it; read by module actors as a call starts), and
what one call has spent (its own, in its task's context, checked by the native LM client
before each request)."""

from __future__ import annotations

from dspex.config import Budget, Config
from dspex.errors import BudgetExceeded


class Use:
    """LM use of one scope: prompt and completion tokens, the priced calls' cost (US dollars)
    and how many calls had no price."""

    __slots__ = ("completion_tokens", "cost", "priced", "prompt_tokens", "unpriced")

    def __init__(self) -> None:
        self.prompt_tokens = self.completion_tokens = self.unpriced = 0
        self.cost = 0.0
        self.priced = False  # some call had a price

    @property
    def tokens(self) -> int:
        """Prompt and completion tokens."""
        return self.prompt_tokens + self.completion_tokens

    def add(self, prompt_tokens: int, completion_tokens: int, cost: float | None) -> None:
        """Count one attempt's use (``cost`` None: its model has no price)."""
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        if cost is None:
            if prompt_tokens or completion_tokens:
                self.unpriced += 1
        else:
            self.cost += cost
            self.priced = True

    def check(self, budget: Budget, whose: str) -> None:
        """BudgetExceeded if ``budget`` is spent by this use."""
        if budget.spent(self.tokens, self.cost):
            raise BudgetExceeded(
                f"{whose} budget ({budget.describe()}) is spent: {self.tokens} tokens and "
                f"${self.cost:.6g} used; no LM request was sent. Raise it (runtime.configure"
                "(budget=..., budgets=...), or the call's budget=) or wait for a new one"
            )


class Spent:
    """What the runtime (``runtime``: every module but wrapped programs, whose predictors count
    themselves) and each module type (``types``) have used."""

    __slots__ = ("runtime", "types")

    def __init__(self) -> None:
        self.runtime = Use()
        self.types: dict[str, Use] = {}

    def add(self, module_type: str, prompt: int, completion: int, cost: float | None) -> None:
        """Count an attempt of a module of ``module_type``."""
        use = self.types.get(module_type)
        if use is None:
            use = self.types[module_type] = Use()
        use.add(prompt, completion, cost)
        if module_type != "Module":
            self.runtime.add(prompt, completion, cost)

    def check(self, config: Config, module_type: str) -> None:
        """BudgetExceeded if the runtime's budget or ``module_type``'s is spent."""
        if config.budget is not None:
            self.runtime.check(config.budget, "the runtime's")
        budget = config.budgets.get(module_type)
        if budget is not None:
            self.types.get(module_type, Use()).check(budget, f"{module_type}'s")


class CallSpend(Use):
    """One call's own use, against its own ``budget`` (None: the call has none, only the
    runtime's or its type's); the module actor puts it in ``CALL_SPEND``
    (:mod:`dspex.lm._client`), where the native LM client checks and counts each request."""

    __slots__ = ("budget",)

    def __init__(self, budget: Budget | None):
        super().__init__()
        self.budget = budget

    def before_request(self) -> None:
        """BudgetExceeded if the call's budget is spent: its next LM request is not sent."""
        if self.budget is not None:
            self.check(self.budget, "this call's")

    def left(self) -> Budget | None:
        """What is left of the call's budget (a sub-module's call in a wrapped program runs
        on it), or None if it has none."""
        budget = self.budget
        if budget is None:
            return None
        self.before_request()
        tokens = None if budget.max_tokens is None else budget.max_tokens - self.tokens
        cost = None if budget.max_cost is None else budget.max_cost - self.cost
        return Budget(max_tokens=tokens, max_cost=cost)
