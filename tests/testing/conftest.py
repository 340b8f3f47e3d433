"""Fixtures for dspex.testing tests. DSPy's tests run offline: no LiteLLM cost-map download."""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
