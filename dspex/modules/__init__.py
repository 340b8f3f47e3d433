"""Module actors and the facades users call (Predict, ChainOfThought, ReAct, ...)."""

from dspex.modules._actor import ModuleActor, ModuleInfo
from dspex.modules._facade import (
    BestOfN,
    ChainOfThought,
    Module,
    ModuleRef,
    ModuleType,
    MultiChainComparison,
    Parallel,
    Predict,
    ProgramOfThought,
    ReAct,
    Refine,
    create_module,
)
from dspex.modules._program import PredictorInfo, ProgramInfo
from dspex.modules._wrap import ProgramRef

__all__ = [
    "BestOfN",
    "ChainOfThought",
    "Module",
    "ModuleActor",
    "ModuleInfo",
    "ModuleRef",
    "ModuleType",
    "MultiChainComparison",
    "Parallel",
    "Predict",
    "PredictorInfo",
    "ProgramInfo",
    "ProgramOfThought",
    "ProgramRef",
    "ReAct",
    "Refine",
    "create_module",
]
