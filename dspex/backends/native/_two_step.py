"""DSPy 3.4.1's TwoStepAdapter, natively: a plain prompt for the module's LM, then the output
fields extracted from its answer by a second LM with the ChatAdapter.

The first step's messages are a task description and ``name: value`` lines (values as Python
prints them, in an f-string, as DSPy does; no content parts, no history turns); the second
step is a native Predict on ``text -> <the outputs>`` with DSPy's extraction instructions
(:meth:`TwoStepAdapter.extractor`). :class:`~dspex.backends.native.NativePredict` runs both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar

from dspex.errors import ParseError
from dspex.lm import LM
from dspex.signature import Field, Signature, SignatureLike

from ._adapters import Adapter, DemoMessages, Message, Render, _Plan, sort_demos
from ._parsing import ReplyParser
from ._types import field_descriptions

_INCOMPLETE = "This is an example of the task, though some input or output fields are not supplied."
_MISSING_IN_EXAMPLE = "Not supplied for this particular example. "


class TwoStepAdapter(Adapter):
    """DSPy's TwoStepAdapter: ``lm`` is the extraction LM (the second step's)."""

    name: ClassVar[str] = "TwoStepAdapter"

    def __init__(self, lm: LM) -> None:
        self.lm = lm

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.lm.model!r})"

    def _system_message(self, sig: Signature) -> str:
        parts = [
            "You are a helpful assistant that can solve tasks based on user input.",
            "As input, you will be provided with:\n" + field_descriptions(sig.inputs),
            "Your outputs must contain:\n" + field_descriptions(sig.outputs),
            "You should lay out your outputs in detail so that your answer can be understood "
            "by another agent",
        ]
        if sig.instructions:
            parts.append(f"Specific instructions: {sig.instructions}")
        return "\n".join(parts)

    def _render(self, name: str, annotation: Any, output: bool) -> Render:
        return lambda value: f"{name}: {value}"

    def _structure(self, sig: Signature) -> str:
        return ""

    def _reminder(self, sig: Signature) -> str:
        return ""

    def _assistant(self, plan: _Plan, values: Mapping[str, Any], missing: Any) -> str:
        return "\n\n".join(
            f"{name}: {values[name]}" for name in plan.output_names if name in values
        )

    def _reader(self, reply: ReplyParser) -> Callable[[str], dict[str, Any]]:
        def parse(completion: str) -> dict[str, Any]:
            raise ParseError(
                "the TwoStepAdapter parses with its extraction LM: run it in a module",
                adapter_name=self.name,
                lm_response=completion,
            )

        return parse

    def format(
        self,
        signature: SignatureLike,
        demos: Sequence[Mapping[str, Any]] | DemoMessages = (),
        inputs: Mapping[str, Any] | None = None,
    ) -> list[Message]:
        """The first step's messages: the task, the demos, the inputs (``name: value``)."""
        plan = self._plan(signature)
        messages: list[Message] = [{"role": "system", "content": plan.system}]
        self._add_demos(plan, demos, messages)
        values = inputs or {}
        lines = [f"{name}: {values.get(name, '')}" for name in plan.input_names if name in values]
        messages.append({"role": "user", "content": "\n\n".join(lines).strip()})
        return messages

    def _demos(
        self, plan: _Plan, demos: Iterable[Mapping[str, Any]], messages: list[Message]
    ) -> None:
        """Each demo's inputs as ``name: value`` lines, its outputs as the assistant's reply."""
        complete, incomplete = sort_demos(plan, demos)
        for demo, prefix in [(d, _INCOMPLETE) for d in incomplete] + [(d, "") for d in complete]:
            lines = [f"{name}: {demo.get(name, '')}" for name in plan.input_names if name in demo]
            messages.append({"role": "user", "content": "\n\n".join([prefix, *lines]).strip()})
            content = self._assistant(plan, demo, _MISSING_IN_EXAMPLE).strip()
            messages.append({"role": "assistant", "content": content})

    def extractor(self, signature: SignatureLike) -> Signature:
        """The second step's signature: ``text`` in, the outputs out, DSPy's instructions."""
        sig = self._plan(signature).reply.fields
        names = ", ".join(f"`{f.name}`" for f in sig)
        instructions = (
            "The input is a text that should contain all the necessary information to produce "
            f"the fields {names}.             Your job is to extract the fields from the text "
            "verbatim. Extract precisely the appropriate value (content) for each field."
        )
        return Signature((Field.input("text"),), sig, instructions)
