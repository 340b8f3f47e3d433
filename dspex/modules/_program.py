"""A wrapped ``dspy.Module``'s predictors: found by walking the program, read exactly.

:func:`find_predictors` walks a program as DSPy's ``named_sub_modules`` does (attributes, list,
tuple and dict items), stops at each sub-module of a type dspex serves as a module actor and
walks into any other ``dspy.Module`` (a user's custom sub-modules). :func:`plan_predictor` reads
one such sub-module's optimized state (signature with its names, types, prefixes and
descriptions, instructions, demos, LM and call config) into a :class:`PredictorPlan`, or says
why native cannot serve it. Nothing here mutates the program it reads.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Literal

import msgspec

from dspex.backends._spec import PredictorState
from dspex.errors import DSPexError
from dspex.lm import LM
from dspex.modules._actor import ModuleInfo
from dspex.signature import Signature

#: One step from a container to what it holds: an attribute name, a list/tuple index or a key.
Step = tuple[Literal["attr", "item"], Any]

#: The DSPy classes served as module actors (matched by exact type: a subclass may change
#: ``forward``, so it is walked into instead).
SERVED = ("Predict", "ChainOfThought", "ReAct", "MultiChainComparison", "BestOfN", "Refine")

#: Types served whole over a Predict or a ChainOfThought only: each attempt runs a copy of
#: their module on another LM (and, for Refine, adapter), which a module of another type
#: cannot be given through module actors, so DSPy runs them, whole, inside the program.
OVER_ONE = ("BestOfN", "Refine")

#: Predict ``config`` keys a module actor's call takes as per-call LM overrides.
CALL_CONFIG = ("temperature", "max_tokens", "n")


class Found(msgspec.Struct, frozen=True):
    """A sub-module of a served type: where it is (``steps`` from the program) and what it is."""

    steps: tuple[Step, ...]
    module: Any

    @property
    def path(self) -> str:
        """Its path as DSPy names it in saved state, e.g. ``draft`` or ``layers[0]``."""
        return path_of(self.steps)


class PredictorPlan(msgspec.Struct, frozen=True, kw_only=True):
    """How one served sub-module runs as a module actor.

    ``path`` names its actor: its predictor's name in DSPy's saved state for a Predict or a
    ChainOfThought (``draft.predict`` for a ChainOfThought at ``draft``), the sub-module's
    path for a type with several predictors (``agent`` for a ReAct); ``paths`` are the names
    of the predictors it serves (``agent.react``, ``agent.extract.predict``). ``module_type``
    is the dspex type serving it; ``signature`` and ``demos`` its optimized state (for a
    ChainOfThought, the signature without ``reasoning``, which the type adds back exactly);
    for the other types ``signature`` is the module's own and ``predictors`` its predictors'
    state, ``options`` its settings (tools, N, reward_fn, ...). ``lm`` is its own LM, if it
    has one; ``call_options`` its Predict ``config`` as per-call LM overrides;
    ``native_unsupported`` why native cannot serve it (then it is served on dspy), or None.
    """

    found: Found
    path: str
    paths: tuple[str, ...]
    module_type: str
    signature: Signature
    demos: tuple[dict[str, Any], ...] = ()
    predictors: dict[str, PredictorState] = {}
    options: dict[str, Any] = {}
    lm: LM | None
    call_options: dict[str, Any] = {}
    native_unsupported: str | None = None


class PredictorInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One predictor of a wrapped program, as ``await ref.info()`` lists it.

    ``path`` is its name in DSPy's saved state (``draft.predict``); ``module_type`` the type
    serving it (``ChainOfThought``); ``name`` its module actor's name in metrics and spans
    (``qa.draft.predict``), None for a predictor DSPy runs inside the program itself;
    ``implementations`` those that may serve its calls; ``demos`` how many it carries;
    ``circuit`` its module actor's native circuit (None inside the program); and
    ``native_unsupported`` why native does not serve it, or None.
    """

    path: str
    module_type: str
    name: str | None
    implementations: tuple[str, ...]
    demos: int
    circuit: str | None
    native_unsupported: str | None


class ProgramInfo(ModuleInfo, frozen=True, kw_only=True):
    """What ``await ref.info()`` returns for a program served by ``Module.wrap``: the program's
    own module description (its actor runs the program's code on dspy; ``demos`` counts its
    predictors' demos) and each of its ``predictors``, in DSPy's order."""

    predictors: tuple[PredictorInfo, ...] = ()


def path_of(steps: tuple[Step, ...]) -> str:
    """``steps`` as DSPy writes a sub-module's name: ``a.b``, ``a[0]``, ``a['key']``."""
    text = ""
    for kind, value in steps:
        if kind == "attr":
            text = f"{text}.{value}" if text else str(value)
        elif isinstance(value, int):
            text = f"{text}[{value}]"
        else:
            text = f"{text}['{value}']"
    return text


def find_predictors(dspy: Any, program: Any) -> list[Found]:
    """The sub-modules of ``program`` dspex serves as module actors, in DSPy's walk order
    (breadth first, each object once); other ``dspy.Module`` s are walked into."""
    served = tuple(getattr(dspy, name) for name in SERVED)
    found: list[Found] = []
    seen = {id(program)}
    queue: list[tuple[tuple[Step, ...], Any]] = list(_children((), program, dspy))
    while queue:
        steps, item = queue.pop(0)
        if id(item) in seen:
            continue
        seen.add(id(item))
        if type(item) in served:
            found.append(Found(steps, item))
        else:
            queue.extend(_children(steps, item, dspy))
    return found


def _children(
    steps: tuple[Step, ...], item: Any, dspy: Any
) -> Iterator[tuple[tuple[Step, ...], Any]]:
    if isinstance(item, dspy.BaseModule):
        for name, value in vars(item).items():
            yield (*steps, ("attr", name)), value
    elif isinstance(item, (list, tuple)):
        for i, value in enumerate(item):
            yield (*steps, ("item", i)), value
    elif isinstance(item, dict):
        for key, value in item.items():
            yield (*steps, ("item", key)), value


def get_at(root: Any, steps: tuple[Step, ...]) -> Any:
    """What ``steps`` lead to from ``root``; LookupError/AttributeError if nothing does."""
    item = root
    for kind, value in steps:
        item = getattr(item, value) if kind == "attr" else item[value]
    return item


def set_at(root: Any, steps: tuple[Step, ...], new: Any) -> None:
    """Replace what ``steps`` lead to from ``root`` with ``new`` (a tuple is rebuilt in its
    parent, since it cannot be changed in place)."""
    *head, (kind, value) = steps
    parent = get_at(root, tuple(head))
    if kind == "attr":
        object.__setattr__(parent, value, new)
    elif isinstance(parent, tuple):
        items = list(parent)
        items[value] = new
        set_at(root, tuple(head), type(parent)(items))
    else:
        parent[value] = new


def _demo(demo: Any) -> dict[str, Any] | None:
    """A DSPy demo (an Example or a dict) as a dict of field name to value."""
    if isinstance(demo, Mapping):
        return dict(demo)
    items = getattr(demo, "items", None)
    if callable(items):  # dspy.Example: its fields, without DSPy's own dspy_* keys
        return dict(items())
    return None


def predictor_path(dspy: Any, found: Found) -> str:
    """The name of ``found``'s predictor in DSPy's saved state (``draft.predict`` for a
    ChainOfThought at ``draft``)."""
    return f"{found.path}.predict" if type(found.module) is dspy.ChainOfThought else found.path


def predictor_paths(found: Found) -> tuple[str, ...]:
    """The names in DSPy's saved state of every predictor of ``found``, in DSPy's order."""
    return tuple(
        found.path if name == "self" else f"{found.path}.{name}"
        for name, _ in found.module.named_predictors()
    )


def plan_predictor(dspy: Any, found: Found) -> PredictorPlan | str:
    """How ``found`` is served (``native_unsupported`` says why native cannot serve it), or
    why dspex cannot serve it at all (a signature dspex cannot read, or a BestOfN or Refine
    over a module of another type than Predict and ChainOfThought): then it stays in the
    program, run by DSPy."""
    module = found.module
    kind = type(module).__name__
    if kind in OVER_ONE and type(module.module) not in (dspy.Predict, dspy.ChainOfThought):
        return (
            f"a {kind} over a {type(module.module).__name__} runs inside the program, on "
            "DSPy: dspex serves it whole over a Predict or a ChainOfThought only"
        )
    why: list[str] = []
    states: dict[str, PredictorState] = {}
    configs: dict[str, dict[str, Any]] = {}
    lms: list[Any] = []
    several = kind not in ("Predict", "ChainOfThought")
    try:
        for name, predict in module.named_predictors():
            label = f"its predictor {name!r}: " if several else ""
            states[name] = _read(predict, why, label)
            configs[name] = dict(predict.config)
            lms.append(predict.lm)
    except DSPexError as exc:
        return f"dspex cannot read its signature: {exc}"
    lm: LM | None = None
    if any(other is not lms[0] for other in lms):
        why.append("its predictors have different LMs, and native runs one per module")
    elif lms[0] is not None:
        try:
            lm = LM.from_dspy(lms[0])
        except DSPexError as exc:
            why.append(f"its own LM cannot be served natively: {exc}")
    paths = predictor_paths(found)
    if not several:
        (name,) = states
        return _single(dspy, found, states[name], configs[name], lm, why, paths)
    options: dict[str, Any]
    if kind == "ReAct":
        signature = Signature.from_dspy(module.signature)
        tools = [tool for name, tool in module.tools.items() if name != "finish"]
        options = {"tools": tools, "max_iters": module.max_iters}
    elif kind == "MultiChainComparison":
        signature = states["predict"].signature.delete("rationale")
        for idx in range(module.M):
            signature = signature.delete(f"reasoning_attempt_{idx + 1}")
        # DSPy sets the temperature as its predictor's config: native takes it as an option
        options = {"M": module.M, "temperature": configs["predict"].pop("temperature", None)}
    else:  # BestOfN, Refine: over a Predict or a ChainOfThought
        cot = type(module.module) is dspy.ChainOfThought
        signature = next(iter(states.values())).signature
        if cot and signature.output_names[:1] == ("reasoning",):
            signature = signature.delete("reasoning")
        options = {
            "N": module.N,
            "reward_fn": module.reward_fn,
            "threshold": module.threshold,
            "fail_count": module.fail_count,
            "module": "ChainOfThought" if cot else "Predict",
        }
    for name, config in configs.items():
        if config:
            why.append(f"its predictor {name!r} has the Predict config {sorted(config)}")
    return PredictorPlan(
        found=found,
        path=found.path,
        paths=paths,
        module_type=kind,
        signature=signature,
        predictors=states,
        options=options,
        lm=lm,
        native_unsupported="; ".join(why) or None,
    )


def _read(predict: Any, why: list[str], label: str) -> PredictorState:
    """One DSPy Predict's optimized state; what native cannot serve of it goes to ``why``
    (``label`` says which predictor). DSPexError for a signature dspex cannot read."""
    full = Signature.from_dspy(predict.signature)
    if getattr(predict, "fields", None):
        why.append(f"{label}it has decision fields (Predict.fields), which native does not decode")
    if getattr(predict, "callbacks", None):
        why.append(f"{label}it has DSPy callbacks, which native does not call")
    demos = []
    for i, raw in enumerate(predict.demos):
        demo = _demo(raw)
        if demo is None:
            why.append(f"{label}its demos[{i}] is a {type(raw).__name__}, not an Example or a dict")
            continue
        # DSPy drops a demo without any input or any output field: so does dspex, silently.
        if any(k in demo for k in full.input_names) and any(k in demo for k in full.output_names):
            demos.append(demo)
    return PredictorState(full, tuple(demos))


def _single(
    dspy: Any,
    found: Found,
    state: PredictorState,
    config: dict[str, Any],
    lm: LM | None,
    why: list[str],
    paths: tuple[str, ...],
) -> PredictorPlan:
    """The plan of a Predict or a ChainOfThought: its config gives per-call LM overrides."""
    other = sorted(k for k in config if k not in CALL_CONFIG)
    if other:
        why.append(f"its Predict config {other} has keys native does not pass to the LM")
    full, demos = state.signature, state.demos
    module_type, signature = "Predict", full
    if type(found.module) is dspy.ChainOfThought and full.output_names[:1] == ("reasoning",):
        base = full.delete("reasoning")
        outputs = base.output_names
        # Served as a ChainOfThought when that type rebuilds exactly this signature and takes
        # these demos (each needs an output besides reasoning); else as a Predict of it all.
        if base.with_reasoning() == full and all(any(k in d for k in outputs) for d in demos):
            module_type, signature = "ChainOfThought", base
    return PredictorPlan(
        found=found,
        path=predictor_path(dspy, found),
        paths=paths,
        module_type=module_type,
        signature=signature,
        demos=demos,
        lm=lm,
        call_options={k: config[k] for k in CALL_CONFIG if k in config},
        native_unsupported="; ".join(why) or None,
    )
