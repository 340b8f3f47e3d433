"""Runtime.state and accepting say the truth when the runtime's own tree fails."""

from __future__ import annotations

import pytest

import dspex
from dspex.runtime import ROUTER, Runtime
from dspex.testing import ScriptedLM, respond


async def test_a_runtime_whose_root_supervisor_gave_up_says_so() -> None:
    async with ScriptedLM(respond(answer="Paris")) as server:
        lm = dspex.LM("openai/scripted", api_base=server.base_url, api_key="local")
        async with Runtime(lm=lm, config=dspex.Config()) as rt:
            predict = await dspex.Predict.create("question -> answer")
            assert (rt.state, rt.accepting) == ("running", True)
            for _ in range(4):  # the root allows 3 restarts in 5 s; the 4th crash ends its tree
                router = await rt.wait_for_name(ROUTER, timeout=5)  # restarted
                rt.exit(router, "kill")
                await router.wait()
                assert rt.state in ("running", "failed")
            assert await rt.root.wait() == "shutdown"
            assert (rt.state, rt.accepting) == ("failed", False)
            refused = "the runtime failed: its root supervisor gave up after repeated crashes"
            with pytest.raises(dspex.Unavailable, match=f"{refused}.*Predict takes no new calls"):
                await predict(question="q")
            with pytest.raises(dspex.Unavailable, match=f"{refused}.*it starts no new modules"):
                await dspex.Predict.create("question -> answer")
        assert (rt.state, rt.accepting) == ("stopped", False)
