"""``Module.wrap``: a ``dspy.Module`` served with each of its predictors as a module actor.

The program's own control flow runs unchanged on a copy of it (the user's object is never
touched) whose served sub-modules (see :mod:`dspex.modules._program`) are replaced by
:class:`~dspex.modules._proxy.PredictorProxy` s calling their module actors. The program
itself runs as a ``Module`` actor on the dspy implementation (its ``forward`` in a worker
thread, its ``aforward`` on the loop), so each predictor call is routed, falls back, trips
circuits and is counted on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from dspex._dspy_import import import_dspy
from dspex.backends.dspy._builders import import_factory
from dspex.config import TwoStep, implementation_name
from dspex.errors import ConfigError, DSPexError, SignatureError
from dspex.lm import LM
from dspex.modules._actor import GetDemos, SetDemos
from dspex.modules._facade import (
    ModuleRef,
    Prepared,
    create_module,
    prepare_module,
    start_module,
)
from dspex.modules._program import (
    SERVED,
    PredictorInfo,
    PredictorPlan,
    ProgramInfo,
    find_predictors,
    get_at,
    plan_predictor,
    predictor_paths,
    set_at,
)
from dspex.modules._proxy import PredictorProxy, ProgramCall

if TYPE_CHECKING:
    from dspex.runtime import Runtime


class ProgramRef(ModuleRef):
    """A wrapped program's handle: a :class:`ModuleRef` to the program's actor, with
    ``predictors``, the handles of its sub-modules' actors by path (``draft.predict``, a
    predictor's name in DSPy's saved state; ``agent`` for a ReAct serving ``agent.react`` and
    ``agent.extract.predict``). ``stop()`` stops them all."""

    __slots__ = ("predictors", "source")

    def __init__(self, program: ModuleRef, source: ProgramSource):
        super().__init__(program._runtime, program.name, program.module_type, None, program._actor)
        self.source = source
        self.predictors: dict[str, ModuleRef] = dict(source.refs)

    async def info(self) -> ProgramInfo:
        """The program's description (see :class:`~dspex.modules.ModuleInfo`) with each of
        its ``predictors`` (:class:`~dspex.modules.PredictorInfo`): path, module type, the
        implementations that may serve it and, on dspy only, why, its demos and its circuit.
        ModuleStopped if the program's actor or a predictor's crashed past its budget."""
        own = await super().info()
        source = self.source
        served = dict(
            zip(
                self.predictors,
                await asyncio.gather(*(ref.info() for ref in self.predictors.values())),
                strict=True,
            )
        )
        predictors: list[PredictorInfo] = []
        for plan in source.plans:
            info = served.get(plan.path)
            if info is None:
                continue
            why = plan.native_unsupported or info.native_unsupported
            implementations = (
                (info.forced,)
                if info.forced is not None
                else ("dspy",)
                if why is not None
                else info.implementations
            )
            # each predictor's demos, from the actor that owns them
            actor = self.predictors[plan.path]
            demos = (
                [len(await actor._ask(GetDemos(name))) for name in plan.predictors]
                if plan.predictors
                else [info.demos]
            )
            predictors.extend(
                PredictorInfo(
                    path=path,
                    module_type=info.module_type,
                    name=f"{source.label}.{plan.path}",
                    implementations=implementations,
                    demos=count,
                    circuit=info.circuit,
                    native_unsupported=why,
                )
                for path, count in zip(plan.paths, demos, strict=True)
            )
        for path, (module_type, why) in source.local.items():
            predictors.append(
                PredictorInfo(
                    path=path,
                    module_type=module_type,
                    name=None,
                    implementations=("dspy",),
                    demos=source.local_demos.get(path, 0),
                    circuit=None,
                    native_unsupported=why,
                )
            )
        fields = {**msgspec.structs.asdict(own), "demos": sum(p.demos for p in predictors)}
        return ProgramInfo(**fields, predictors=tuple(predictors))

    async def set_demos(
        self, demos: Iterable[Mapping[str, Any]], *, predictor: str | None = None
    ) -> None:
        """Replace one predictor's demos (checked as at ``create``; kept across restarts):
        ``predictor`` names it by its path in DSPy's saved state (``draft.predict``,
        ``agent.react``), or may be left out when the program has one. ConfigError for a name
        that is not one of its predictors (they are listed),
        for no name with several predictors, or for demos that do not fit; the predictor then
        keeps its demos and serves on."""
        await self._incarnation(None)  # ModuleStopped for a program that crashed past its budget
        targets = self.source.targets
        names = list(targets)
        if predictor is None:
            if not names:  # none served as a module actor: the program's own, on DSPy
                await super().set_demos(demos)
                return
            if len(names) != 1:
                raise ConfigError(
                    f"demos= needs a module with one predictor; the program {self.name!r} has "
                    f"{len(names)}: name one with predictor=, one of {names}"
                )
            predictor = names[0]
        target = targets.get(predictor)
        if target is None:
            raise ConfigError(
                f"the program {self.name!r} has no predictor {predictor!r}; its predictors: {names}"
            )
        actor, inner = target
        await self.predictors[actor]._ask(SetDemos(demos, inner))

    async def save(self, path: Any) -> None:
        """Write the program's state as DSPy's ``program.save(path)`` does (``path``, a str or
        path-like, ends in ``.json``), so that ``MyProgram().load(path)`` in plain DSPy reads
        it back: each predictor's signature, instructions and current demos (``set_demos``
        included), as its module actor holds them. ConfigError for another suffix or a path
        it cannot write."""
        from dspex.modules._saved import save_program

        await save_program(self, path)

    async def stop(self) -> None:
        """Stop the program's actor, then its predictors' actors."""
        await super().stop()
        for ref in self.predictors.values():
            await ref.stop()


class ProgramSource:
    """What the program's actor runs, called once per incarnation: a copy of the program (or
    a new one from the user's factory) with its served sub-modules replaced by proxies."""

    __slots__ = (
        "dspy",
        "factory",
        "first",
        "label",
        "local",
        "local_demos",
        "local_ids",
        "local_signatures",
        "loop",
        "plans",
        "refs",
        "targets",
        "template",
    )

    def __init__(
        self,
        dspy: Any,
        template: Any,
        factory: Callable[[], Any] | None,
        plans: list[PredictorPlan],
        refs: Mapping[str, ModuleRef],
        loop: asyncio.AbstractEventLoop,
        label: str = "Module",
        local: Mapping[str, tuple[str, str]] | None = None,
    ):
        self.dspy = dspy
        self.label = label  # the program's name in metrics and spans
        # the predictors DSPy runs inside the program: path -> (module type, why)
        self.local = dict(local or {})
        # the current incarnation's local predictors: by object id, and by signature id
        self.local_ids: dict[int, str] = {}
        self.local_signatures: dict[int, str] = {}
        self.template = template
        self.factory = factory
        self.plans = plans
        self.refs = refs
        # each served predictor's path -> its actor's path and its name there (None: its own)
        self.targets: dict[str, tuple[str, str | None]] = {
            path: (plan.path, name)
            for plan in plans
            for path, name in zip(plan.paths, plan.predictors or (None,), strict=True)
        }
        self.loop = loop
        # the demos of the predictors DSPy runs in the program (dspex never changes them)
        self.local_demos = {
            name: len(p.demos) for name, p in template.named_predictors() if name in self.local
        }
        # A factory's program built to read it serves first (a factory is called once per
        # incarnation of the program's actor, as before); an instance is copied every time.
        self.first: Any = template if factory is not None else None

    def __call__(self) -> Any:
        """The program for a new incarnation of its actor (a fresh copy, or the factory's
        new program), its served sub-modules replaced by proxies."""
        if self.first is not None:
            program, self.first = self.first, None
        elif self.factory is not None:
            program = self.factory()
        else:
            program = self.template.deepcopy()
        for plan in self.plans:
            ref = self.refs.get(plan.path)
            if ref is None:
                continue
            steps = plan.found.steps
            try:
                module = get_at(program, steps)
            except (LookupError, AttributeError):  # a factory that built another shape
                continue
            if type(module) is not type(plan.found.module):
                continue
            proxy = PredictorProxy(self.dspy, module, ref, plan, self.loop)
            set_at(program, steps, proxy)
        if self.local:
            predictors = [(p, path) for path, p in program.named_predictors() if path in self.local]
            self.local_ids = {id(p): path for p, path in predictors}
            shared = Counter(id(p.signature) for p, _ in predictors)
            self.local_signatures = {
                id(p.signature): path for p, path in predictors if shared[id(p.signature)] == 1
            }
        return program

    def open_call(self) -> ProgramCall:
        """The scope of one call of the program (see :class:`ProgramCall`), which the dspy
        implementation runs the program in."""
        return ProgramCall(self.label, self.dspy, self.local_path if self.local else None)

    def local_path(self, predictor: Any) -> str | None:
        """The path of a predictor DSPy ran inside the current incarnation's program: the
        object itself, or a copy of it (BestOfN and Refine run copies), known by its signature
        (a class, which a copy shares) when no other predictor there has it."""
        path = self.local_ids.get(id(predictor))
        if path is None:
            path = self.local_signatures.get(id(getattr(predictor, "signature", None)))
        return path


def _resolve(dspy: Any, program: Any) -> tuple[Any, Callable[[], Any] | None]:
    """The program instance to read and its factory (None for an instance)."""
    if isinstance(program, str):
        program = import_factory(program)
    if isinstance(program, dspy.Module):
        return program, None
    if callable(program):
        built = program()
        if isinstance(built, dspy.Module):
            return built, program
    raise ConfigError(f"Module.wrap needs a dspy.Module or a factory of one, got {program!r}")


async def wrap_program(
    program: Any,
    *,
    lm: Any,
    adapter: str | TwoStep | None,
    runtime: Runtime | None,
    name: str | None,
    implementation: str | None,
) -> ModuleRef:
    """Serve ``program``; see :meth:`dspex.Module.wrap`."""
    from dspex.runtime import Runtime

    impl = implementation_name(implementation) if implementation is not None else None
    if impl == "dspy":  # the whole program on DSPy, as one module
        return await create_module(
            "Module", None, lm=lm, adapter=adapter, runtime=runtime, program=program, name=name
        )
    if runtime is not None and not isinstance(runtime, Runtime):
        raise ConfigError(f"runtime must be a dspex.Runtime, got {type(runtime).__name__}")
    rt = runtime if runtime is not None else Runtime.current()
    dspy = await import_dspy()
    instance, factory = _resolve(dspy, program)
    template = instance.deepcopy() if factory is None else instance
    plans: list[PredictorPlan] = []
    local: dict[str, tuple[str, str]] = {}  # run by DSPy in the program: path -> (type, why)
    default_lm = _default_lm(lm, rt, dspy)
    covered: set[int] = set()  # the Predicts of the sub-modules the walk found
    # Read from the user's own object: DSPy's deepcopy drops some state (a Predict's callbacks).
    for found in find_predictors(dspy, instance):
        covered |= {id(predict) for _, predict in found.module.named_predictors()}
        plan = plan_predictor(dspy, found)
        if not isinstance(plan, str) and plan.lm is None and isinstance(default_lm, str):
            plan = default_lm
        if isinstance(plan, str):
            kind = type(found.module).__name__
            local.update(dict.fromkeys(predictor_paths(found), (kind, plan)))
        else:
            plans.append(plan)
    local.update(_uncovered(dspy, instance, covered))
    label = name if name is not None else "Module"
    prepared = [_prepare(plan, default_lm, adapter, rt, label, impl) for plan in plans]
    # what native cannot build from a sub-module's state is served on dspy
    plans = [await _check_built(rt, p, ready) for p, ready in zip(plans, prepared, strict=True)]
    if impl == "native":
        _check_native(plans, local)
    refs: dict[str, ModuleRef] = {}
    try:
        for plan, ready in zip(plans, prepared, strict=True):
            if plan.native_unsupported is not None and ready.forced is None:
                ready = msgspec.structs.replace(ready, forced="dspy")
            refs[plan.path] = await start_module(ready)
        source = ProgramSource(dspy, template, factory, plans, refs, rt.loop, label, local)
        ref = await create_module(
            "Module", None, lm=lm, adapter=adapter, runtime=rt, program=source, name=name
        )
    except BaseException:
        for started in refs.values():
            with contextlib.suppress(DSPexError):
                await started.stop()
        raise
    return ProgramRef(ref, source)


def _default_lm(lm: Any, rt: Runtime, dspy: Any) -> Any:
    """The LM of predictors without their own, as DSPy would pick it: ``lm``, the runtime's,
    then ``dspy.settings.lm``; a str saying why there is none."""
    if lm is not None or rt.lm is not None:
        return lm  # None: create_module takes the runtime's
    if dspy.settings.lm is None:
        return "no LM: pass lm= to Module.wrap, or create the Runtime with lm="
    try:
        return LM.from_dspy(dspy.settings.lm)
    except DSPexError as exc:
        return f"dspy.settings.lm cannot be served natively: {exc}"


def _uncovered(dspy: Any, program: Any, covered: set[int]) -> dict[str, tuple[str, str]]:
    """The Predicts of ``program`` the walk did not find (``covered``: the ids of those it
    found), which DSPy runs inside a module of another type: path -> (type, why)."""
    served = ", ".join(SERVED)
    return {
        path.removeprefix("self."): (
            type(predictor).__name__,
            f"DSPy runs it in the program: dspex serves sub-modules of the exact types "
            f"{served}, and this {type(predictor).__name__} is "
            + ("part of a module of another type" if type(predictor) is dspy.Predict else "not"),
        )
        for path, predictor in program.named_sub_modules(type_=dspy.Predict)
        if id(predictor) not in covered
    }


def _check_native(plans: list[PredictorPlan], local: Mapping[str, tuple[str, str]]) -> None:
    """ConfigError naming every predictor native cannot serve, and why: those DSPy runs in
    the program (``local``) and those served on dspy only."""
    problems = [f"{path}: {why}" for path, (_, why) in local.items()]
    for plan in plans:
        if plan.native_unsupported:
            paths = "" if plan.paths == (plan.path,) else f" ({', '.join(plan.paths)})"
            problems.append(f"{plan.path}{paths}: {plan.native_unsupported}")
    if problems:
        raise ConfigError(
            "implementation='native' cannot serve every predictor of this program:\n  "
            + "\n  ".join(problems)
            + "\nwrap it without implementation= (those run on dspy) or with "
            "implementation='dspy'"
        )


def _prepare(
    plan: PredictorPlan,
    lm: Any,
    adapter: str | TwoStep | None,
    rt: Runtime,
    label: str,
    impl: str | None,
) -> Prepared:
    """The module actor serving ``plan``, named ``<program>.<path>`` in metrics and spans."""
    try:
        return prepare_module(
            plan.module_type,
            plan.signature,
            demos=plan.demos,
            lm=plan.lm or lm,
            adapter=adapter,
            implementation=impl,
            runtime=rt,
            options=plan.options,
            program=plan.found.module,
            predictors=plan.predictors,
            name=f"{label}.{plan.path}",
        )
    except (ConfigError, SignatureError) as exc:
        raise type(exc)(f"predictor {plan.path!r} of the program: {exc}") from exc


async def _check_built(rt: Runtime, plan: PredictorPlan, ready: Prepared) -> PredictorPlan:
    """``plan``, saying why native cannot serve it if building it natively fails (native
    reads the sub-module's state the way it will serve it: this is that very build)."""
    if plan.native_unsupported is not None or not rt.registry.native_available(plan.module_type):
        return plan
    try:
        await rt.backends["native"].create(ready.spec)
    except (ConfigError, SignatureError) as exc:
        return msgspec.structs.replace(plan, native_unsupported=str(exc))
    return plan
