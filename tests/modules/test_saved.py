"""Saved programs, both ways, with DSPy 3.4.1 as the oracle: ``dspex.load`` serves what
``program.save`` wrote exactly as plain DSPy serves it loaded from the same file, and what
``ProgramRef.save`` writes, ``MyProgram().load(path)`` reads back to the same state."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import dspy
import pytest

import dspex
from dspex.errors import ConfigError
from dspex.runtime import Runtime
from dspex.testing import ScriptedLM
from tests.modules import corpus
from tests.modules.test_programs import (
    ANSWERS,
    compile_agent,
    compile_draft_refine,
    react_script,
    served_as_dspy_serves,
)

CALLS = [{"question": "Capital of France?"}, {"question": "Capital of Japan?"}]


async def saved_compiled(server: ScriptedLM, path: Path) -> corpus.DraftRefine:
    """DraftRefine compiled by BootstrapFewShot, with its own instructions, saved by DSPy."""
    program = await asyncio.to_thread(compile_draft_refine, server)
    predict = program.refine
    predict.signature = predict.signature.with_instructions("Refine the draft; be brief.")
    program.save(str(path))
    return program


def loaded(path: Path, program: Any = corpus.DraftRefine) -> Any:
    """The program as plain DSPy loads it from ``path``."""
    fresh = program()
    fresh.load(str(path))
    return fresh


async def test_dspex_serves_a_program_dspy_saved(
    rt: Runtime, server: ScriptedLM, tmp_path: Path
) -> None:
    server.script = ANSWERS
    path = tmp_path / "prog.json"
    await saved_compiled(server, path)
    ref = await dspex.load(path, program=corpus.DraftRefine, name="qa")
    assert isinstance(ref, dspex.modules.ProgramRef)
    assert sorted(ref.predictors) == ["draft.predict", "refine"]
    oracle = loaded(path)
    assert (await ref.info()).demos == sum(len(p.demos) for p in oracle.predictors()) > 0
    await served_as_dspy_serves(server, ref, oracle, CALLS)
    sent = str(server.requests[-1].messages)
    assert "Capital of Italy?" in str(server.requests[-2].messages)  # the saved demos went out
    assert "Refine the draft; be brief." in sent  # and the saved instructions
    report = (await rt.metrics()).modules
    assert set(report["qa.draft.predict"]) == set(report["qa.refine"]) == {"native"}


async def test_dspy_reads_back_what_dspex_saved(
    rt: Runtime, server: ScriptedLM, tmp_path: Path
) -> None:
    server.script = ANSWERS
    program = await saved_compiled(server, tmp_path / "dspy.json")
    ref = await dspex.Module.wrap(program)
    assert isinstance(ref, dspex.modules.ProgramRef)
    await ref.save(tmp_path / "dspex.json")
    again = loaded(tmp_path / "dspex.json")
    assert again.dump_state() == program.dump_state()
    assert again.dump_state() == loaded(tmp_path / "dspy.json").dump_state()


async def test_a_typed_program_with_instructions_round_trips(
    rt: Runtime, server: ScriptedLM, tmp_path: Path
) -> None:
    program = corpus.Typed()
    demo = {"question": "Lima?", "city": corpus.City(name="Lima", population=9), "confidence": 1}
    program.facts.demos = [dspy.Example(**demo)]
    program.facts.signature = program.facts.signature.with_instructions("Facts, exactly.")
    program.save(str(tmp_path / "dspy.json"))
    ref = await dspex.load(tmp_path / "dspy.json", program=corpus.Typed)
    assert isinstance(ref, dspex.modules.ProgramRef)
    await ref.save(tmp_path / "dspex.json")
    state = loaded(tmp_path / "dspex.json", corpus.Typed).dump_state()
    assert state == program.dump_state()
    assert state["facts"]["signature"]["instructions"] == "Facts, exactly."
    assert state["facts"]["demos"][0]["city"] == {"name": "Lima", "population": 9}


async def test_set_demos_then_save_shows_the_new_demos_in_dspy(
    rt: Runtime, server: ScriptedLM, tmp_path: Path
) -> None:
    program = await saved_compiled(server, tmp_path / "dspy.json")
    ref = await dspex.load(tmp_path / "dspy.json", program=corpus.DraftRefine)
    assert isinstance(ref, dspex.modules.ProgramRef)
    new = [{"question": "Capital of Chad?", "reasoning": "It is.", "answer": "N'Djamena"}]
    await ref.set_demos(new, predictor="draft.predict")
    await ref.save(tmp_path / "dspex.json")
    state = loaded(tmp_path / "dspex.json").dump_state()
    assert state["draft.predict"]["demos"] == new
    assert state["refine"] == program.dump_state()["refine"]  # the other one as it was
    # and set on a predictor's own handle: its actor owns the demos, save reads them there
    await ref.predictors["refine"].set_demos([{"question": "q", "answer": "a"}])
    await ref.save(tmp_path / "dspex.json")
    state = loaded(tmp_path / "dspex.json").dump_state()
    assert state["refine"]["demos"] == [{"question": "q", "answer": "a"}]
    assert state["draft.predict"]["demos"] == new


async def test_a_react_saved_by_dspy_is_served_and_saved_back(
    rt: Runtime, server: ScriptedLM, tmp_path: Path
) -> None:
    server.script = react_script
    program = compile_agent(corpus.Agent())
    program.save(str(tmp_path / "dspy.json"))
    ref = await dspex.load(tmp_path / "dspy.json", program=corpus.Agent, name="qa")
    assert isinstance(ref, dspex.modules.ProgramRef)
    assert list(ref.predictors) == ["agent"]  # one ReAct actor for both of its predictors
    await served_as_dspy_serves(server, ref, loaded(tmp_path / "dspy.json", corpus.Agent), CALLS)
    await ref.save(tmp_path / "dspex.json")
    assert loaded(tmp_path / "dspex.json", corpus.Agent).dump_state() == program.dump_state()
    # one of the ReAct's predictors gets new demos: it sends them, save writes them
    new = [{"question": "Who?", "trajectory": "t", "reasoning": "r", "answer": "Us"}]
    await ref.set_demos(new, predictor="agent.extract.predict")
    assert [p.demos for p in (await ref.info()).predictors] == [1, 1]
    await ref(question="Paris?")
    assert "Us" in str(server.requests[-1].messages)
    await ref.save(tmp_path / "dspex.json")
    state = loaded(tmp_path / "dspex.json", corpus.Agent).dump_state()
    assert state["agent.extract.predict"]["demos"] == new
    assert state["agent.react"] == program.dump_state()["agent.react"]
    with pytest.raises(ConfigError, match=r"its predictors: \['agent.react', 'agent.extract"):
        await ref.set_demos(new, predictor="agent.extract")


async def test_a_factory_loads_and_saves(rt: Runtime, server: ScriptedLM, tmp_path: Path) -> None:
    server.script = ANSWERS
    program = await saved_compiled(server, tmp_path / "dspy.json")
    ref = await dspex.load(tmp_path / "dspy.json", program=lambda: corpus.DraftRefine())
    assert isinstance(ref, dspex.modules.ProgramRef)
    await served_as_dspy_serves(server, ref, loaded(tmp_path / "dspy.json"), CALLS[:1])
    wrapped = await dspex.Module.wrap(lambda: loaded(tmp_path / "dspy.json"))
    assert isinstance(wrapped, dspex.modules.ProgramRef)
    await wrapped(question="q")  # its first incarnation serves the program it was read from
    await wrapped.set_demos([{"question": "q", "answer": "a"}], predictor="refine")
    await wrapped.save(tmp_path / "dspex.json")
    state = loaded(tmp_path / "dspex.json").dump_state()
    assert state["refine"]["demos"] == [{"question": "q", "answer": "a"}]
    assert state["draft.predict"] == program.dump_state()["draft.predict"]


async def test_a_directory_saved_with_the_program(
    rt: Runtime, server: ScriptedLM, tmp_path: Path
) -> None:
    server.script = ANSWERS
    program = await asyncio.to_thread(compile_draft_refine, server)
    program.save(str(tmp_path / "saved"), save_program=True)
    with pytest.raises(ConfigError, match="allow_pickle=True"):
        await dspex.load(tmp_path / "saved")
    ref = await dspex.load(tmp_path / "saved", allow_pickle=True, name="qa")  # no program=
    assert isinstance(ref, dspex.modules.ProgramRef)
    oracle = dspy.load(str(tmp_path / "saved"), allow_pickle=True)
    await served_as_dspy_serves(server, ref, oracle, CALLS)
    # with program=, the pickled program's state goes into a program built from your code
    ref = await dspex.load(tmp_path / "saved", program=corpus.DraftRefine, allow_pickle=True)
    await served_as_dspy_serves(server, ref, oracle, CALLS[:1])
    # and so does a state file DSPy pickled (program.save("prog.pkl"))
    program.save(str(tmp_path / "prog.pkl"))
    with pytest.raises(ConfigError, match="allow_pickle=True"):
        await dspex.load(tmp_path / "prog.pkl", program=corpus.DraftRefine)
    ref = await dspex.load(tmp_path / "prog.pkl", program=corpus.DraftRefine, allow_pickle=True)
    await served_as_dspy_serves(server, ref, oracle, CALLS[:1])


async def test_files_that_are_not_a_saved_program(rt: Runtime, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nothing at '.*missing\.json'"):
        await dspex.load(tmp_path / "missing.json", program=corpus.DraftRefine)
    for name, text in [
        ("bad.json", "{not json"),
        ("other.json", json.dumps({"draft.predict": {"demos": []}})),
        ("list.json", "[1, 2]"),
    ]:
        (tmp_path / name).write_text(text)
        with pytest.raises(ConfigError, match=rf"'.*{name}' is not DSPy's saved state"):
            await dspex.load(tmp_path / name, program=corpus.DraftRefine)
    (tmp_path / "prog.txt").write_text("{}")
    with pytest.raises(ConfigError, match="is not DSPy's saved state"):
        await dspex.load(tmp_path / "prog.txt", program=corpus.DraftRefine)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"lacks \['program.pkl', 'metadata.json'\]"):
        await dspex.load(tmp_path / "empty", allow_pickle=True)


async def test_state_that_does_not_fit_the_program(rt: Runtime, tmp_path: Path) -> None:
    path = tmp_path / "prog.json"
    corpus.DraftRefine().save(str(path))
    with pytest.raises(ConfigError) as info:
        await dspex.load(path, program=corpus.Hops)
    message = str(info.value)
    assert "does not fit Hops" in message
    assert str(path) in message
    assert "['step']" in message
    assert "['draft.predict', 'refine']" in message
    assert "pass program= the program that saved" in message

    class Wider(corpus.DraftRefine):
        def __init__(self) -> None:
            super().__init__()
            self.refine = dspy.Predict("question, draft, context -> answer")

    with pytest.raises(ConfigError, match=r"its predictor 'refine' has the fields"):
        await dspex.load(path, program=Wider)
    state = json.loads(path.read_text())
    del state["refine"]["signature"]["instructions"]  # DSPy's load_state raises: mapped
    path.write_text(json.dumps(state))
    with pytest.raises(ConfigError, match=r"does not fit DraftRefine: KeyError\('instructions'"):
        await dspex.load(path, program=corpus.DraftRefine)


async def test_program_must_build_a_dspy_module(rt: Runtime, tmp_path: Path) -> None:
    path = tmp_path / "prog.json"
    corpus.DraftRefine().save(str(path))
    with pytest.raises(ConfigError, match="needs program="):
        await dspex.load(path)
    with pytest.raises(ConfigError, match="not an instance"):
        await dspex.load(path, program=corpus.DraftRefine())
    with pytest.raises(ConfigError, match=r"a dspy\.Module class or a zero-argument factory"):
        await dspex.load(path, program="DraftRefine")
    with pytest.raises(ConfigError, match="program\\(\\) returned dict"):
        await dspex.load(path, program=dict)
    with pytest.raises(ConfigError, match="program\\(\\) raised TypeError"):
        await dspex.load(path, program=corpus.Hops.forward)


async def test_save_writes_json_only(rt: Runtime, tmp_path: Path) -> None:
    ref = await dspex.Module.wrap(corpus.DraftRefine())
    assert isinstance(ref, dspex.modules.ProgramRef)
    with pytest.raises(ConfigError, match=r"must end in \.json"):
        await ref.save(tmp_path / "prog.pkl")
    with pytest.raises(ConfigError, match="could not save"):
        await ref.save(tmp_path / "no" / "such" / "dir.json")
