"""Saved DSPy programs: ``dspex.load`` serves one, ``ProgramRef.save`` writes one.

Both speak DSPy's own formats, read and written by DSPy itself: the state JSON of
``program.save("prog.json")`` (what ``program.load(path)`` reads back), and for ``load`` also
the directory of ``program.save(dir, save_program=True)`` (the pickled program that
``dspy.load`` rebuilds).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dspex._dspy_import import import_dspy
from dspex.config import TwoStep
from dspex.errors import ConfigError
from dspex.modules._actor import GetDemos
from dspex.modules._program import get_at

if TYPE_CHECKING:
    from dspex.modules._facade import ModuleRef
    from dspex.modules._wrap import ProgramRef
    from dspex.runtime import Runtime

#: The files ``program.save(dir, save_program=True)`` writes.
_PICKLED = ("program.pkl", "metadata.json")


async def load(
    path: str | os.PathLike[str],
    *,
    program: Any = None,
    name: str | None = None,
    lm: Any = None,
    adapter: str | TwoStep | None = None,
    implementation: str | None = None,
    runtime: Runtime | None = None,
    allow_pickle: bool = False,
) -> ModuleRef:
    """Serve a program DSPy saved: build it, load its saved state, and wrap it as
    :meth:`dspex.Module.wrap` does (``name``, ``lm``, ``adapter``, ``implementation`` and
    ``runtime`` are passed on); the returned :class:`~dspex.modules.ProgramRef` can
    ``save`` it again.

    ``path`` is the JSON file ``program.save("prog.json")`` wrote; ``program`` builds the
    program it is loaded into: its ``dspy.Module`` class, or a zero-argument factory of one.
    ``path`` may also be a directory written by ``program.save(dir, save_program=True)``,
    which holds the pickled program itself: unpickling runs code from the file, so it needs
    ``allow_pickle=True`` (as ``dspy.load`` does); ``program`` may then be left out, or given
    to load the pickled program's state into a program built from your code (as must a
    ``.pkl`` state file).

    ConfigError, naming the path and what to do, for a path that does not exist, a file that
    is not DSPy's saved state, state that does not fit the program (predictors it lacks or
    does not have, signatures with other fields, or anything DSPy's ``load_state`` refuses),
    a ``program`` that is neither a ``dspy.Module`` class nor a factory of one, and a pickle
    without ``allow_pickle=True``.
    """
    from dspex.modules._wrap import wrap_program

    dspy = await import_dspy()
    built = await asyncio.to_thread(_read, dspy, Path(path), program, allow_pickle)
    return await wrap_program(
        built, lm=lm, adapter=adapter, runtime=runtime, name=name, implementation=implementation
    )


def _read(dspy: Any, path: Path, program: Any, allow_pickle: bool) -> Any:
    """The program ``path`` holds, built by ``program`` if given; see :func:`load`."""
    if not path.exists():
        raise ConfigError(
            f"dspex.load: nothing at {str(path)!r}; pass the path given to program.save(...) "
            "(a .json file, or a directory saved with save_program=True)"
        )
    if path.is_dir():
        saved = _unpickle(dspy, path, allow_pickle)
        if program is None:
            return saved
        return _load_into(_build(dspy, program), saved.dump_state(), path)
    if program is None:
        raise ConfigError(
            f"dspex.load({str(path)!r}) needs program=: the file holds a program's state, not "
            "its code; pass the dspy.Module class that saved it (or a zero-argument factory "
            "of one), e.g. dspex.load(path, program=MyProgram)"
        )
    built = _build(dspy, program)
    if path.suffix == ".pkl":
        if not allow_pickle:
            raise _pickle_refused(path)
        state = _checked(path, _call_dspy(path, lambda: _unpickle_state(path)))
    elif path.suffix == ".json":
        state = _checked(path, _json(path))
    else:
        raise ConfigError(
            f"dspex.load: {str(path)!r} is not DSPy's saved state: program.save() writes a "
            "file ending in .json (or .pkl), or a directory with save_program=True"
        )
    return _load_into(built, state, path)


def _build(dspy: Any, program: Any) -> Any:
    """A new program from ``program``, a dspy.Module class or a zero-argument factory."""
    if isinstance(program, dspy.Module):
        raise ConfigError(
            f"dspex.load needs program= to build the program: its class "
            f"(program={type(program).__name__}) or a zero-argument factory, not an instance "
            "(to serve an instance as it is, use dspex.Module.wrap)"
        )
    if not callable(program):
        raise ConfigError(
            f"program= must be a dspy.Module class or a zero-argument factory of one, "
            f"got {program!r}"
        )
    try:
        built = program()
    except Exception as exc:
        raise ConfigError(
            f"dspex.load could not build the program: program() raised {exc!r}; program= "
            "must be a dspy.Module class or a factory callable with no arguments"
        ) from exc
    if not isinstance(built, dspy.Module):
        raise ConfigError(
            f"program= must be a dspy.Module class or a zero-argument factory of one; "
            f"program() returned {type(built).__name__}"
        )
    return built


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"dspex.load: {str(path)!r} is not DSPy's saved state (not JSON: {exc}); "
            'pass the file program.save("prog.json") wrote'
        ) from exc


def _unpickle_state(path: Path) -> Any:
    import pickle  # what cloudpickle wrote, plain pickle reads

    with path.open("rb") as f:
        return pickle.load(f)  # allow_pickle=True: the user trusts the file


def _checked(path: Path, state: Any) -> dict[str, Any]:
    """``state`` if it has the shape of DSPy's saved state: a predictor state per name, and
    DSPy's ``metadata``."""
    metadata = state.get("metadata") if isinstance(state, dict) else None
    if not isinstance(metadata, dict) or "dependency_versions" not in metadata:
        raise ConfigError(
            f"dspex.load: {str(path)!r} is not DSPy's saved state (no DSPy metadata); pass "
            'the file program.save("prog.json") wrote'
        )
    for key, value in state.items():
        if key != "metadata" and not (isinstance(value, dict) and "signature" in value):
            raise ConfigError(
                f"dspex.load: {str(path)!r} is not DSPy's saved state: {key!r} is not a "
                "predictor's state"
            )
    return dict(state)


def _load_into(built: Any, state: Mapping[str, Any], path: Path) -> Any:
    """``built`` with ``state`` loaded (by DSPy's ``load_state``), once it is checked to fit:
    the same predictor names, each signature with as many fields."""
    cls = type(built).__name__
    fix = f"pass program= the program that saved {str(path)!r}, or save this one again"
    params = dict(built.named_parameters())
    saved = [key for key in state if key != "metadata"]
    missing = [name for name in params if name not in state]
    extra = [key for key in saved if key not in params]
    if missing or extra:
        raise ConfigError(
            f"the state in {str(path)!r} does not fit {cls}: {cls} has the predictors "
            f"{list(params)}, the file {saved}; {fix}"
        )
    for name, param in params.items():
        fields = getattr(getattr(param, "signature", None), "fields", None)
        saved_fields = state[name]["signature"].get("fields")
        if (
            isinstance(saved_fields, list)
            and fields is not None
            and len(saved_fields) != len(fields)
        ):
            raise ConfigError(
                f"the state in {str(path)!r} does not fit {cls}: its predictor {name!r} "
                f"has the fields {list(fields)}, the file {len(saved_fields)} fields; {fix}"
            )
    _call_dspy(path, lambda: built.load_state(dict(state)), fix=fix, cls=cls)
    return built


def _call_dspy(path: Path, run: Callable[[], Any], *, fix: str = "", cls: str = "") -> Any:
    """``run()``, with what DSPy raises as a ConfigError naming the file."""
    try:
        return run()
    except ConfigError:
        raise
    except Exception as exc:
        what = f"does not fit {cls}" if cls else "could not be read"
        advice = fix or "pass the file or directory program.save(...) wrote"
        raise ConfigError(f"the state in {str(path)!r} {what}: {exc!r}; {advice}") from exc


def _pickle_refused(path: Path) -> ConfigError:
    return ConfigError(
        f"dspex.load: {str(path)!r} is a pickle, and unpickling runs code from the file; pass "
        "allow_pickle=True if you trust it (as dspy.load asks), or save the program's state "
        'as JSON with program.save("prog.json")'
    )


def _unpickle(dspy: Any, path: Path, allow_pickle: bool) -> Any:
    """The program in a directory written by ``save(dir, save_program=True)``."""
    absent = [name for name in _PICKLED if not (path / name).is_file()]
    if absent:
        raise ConfigError(
            f"dspex.load: the directory {str(path)!r} is not a program DSPy saved: it lacks "
            f"{absent} (program.save(dir, save_program=True) writes {list(_PICKLED)})"
        )
    if not allow_pickle:
        raise _pickle_refused(path / "program.pkl")
    program = _call_dspy(path, lambda: dspy.load(str(path), allow_pickle=True))
    if not isinstance(program, dspy.Module):
        raise ConfigError(
            f"dspex.load: {str(path / 'program.pkl')!r} holds a {type(program).__name__}, "
            "not a dspy.Module"
        )
    return program


async def save_program(ref: ProgramRef, path: str | os.PathLike[str]) -> None:
    """Write ``ref``'s program as ``program.save(path)`` would: see :meth:`ProgramRef.save`."""
    target = Path(path)
    if target.suffix != ".json":
        raise ConfigError(
            f"save writes DSPy's JSON state: the path must end in .json, got {str(target)!r}"
        )
    source = ref.source
    # A plain DSPy program of the same shape, with its own state: a copy of the program as
    # wrapped, or the factory's new one (each incarnation calls it, too).
    program = source.template.deepcopy() if source.factory is None else source.factory()
    for plan in source.plans:
        actor = ref.predictors.get(plan.path)
        if actor is None:
            continue
        predictors = dict(get_at(program, plan.found.steps).named_predictors())
        for name, wrapped in plan.predictors.items() or [(None, plan)]:
            current = await actor._ask(GetDemos(name))
            if current != wrapped.demos:  # else unchanged: DSPy's own, as they were
                # a Predict's or a ChainOfThought's one predictor, or the one named
                predict = predictors[name] if name else next(iter(predictors.values()))
                predict.demos = [dict(d) for d in current]
    try:
        await asyncio.to_thread(program.save, str(target))
    except (OSError, RuntimeError) as exc:  # DSPy's RuntimeError wraps what it could not write
        raise ConfigError(f"could not save the program to {str(target)!r}: {exc}") from exc
