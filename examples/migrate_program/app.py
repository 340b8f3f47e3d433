"""Serve the optimized DraftRefine with dspex: uvicorn app:app"""

from contextlib import asynccontextmanager

from fastapi import FastAPI
from program import DraftRefine
from pydantic import BaseModel

import dspex


@asynccontextmanager
async def lifespan(app: FastAPI):
    async with dspex.Runtime(lm=dspex.LM("openai/gpt-4o-mini")) as runtime:
        runtime.stop_on_signals()
        app.state.qa = await dspex.load("prog.json", program=DraftRefine, name="qa")
        yield


app = FastAPI(lifespan=lifespan)


class Question(BaseModel):
    question: str


@app.post("/qa")
async def qa(body: Question) -> dict:
    pred = await app.state.qa(question=body.question)
    return {"answer": pred.answer, "implementation": pred.implementation}
