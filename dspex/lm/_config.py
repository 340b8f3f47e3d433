"""``LM``: the LM configuration both implementations read (the native client and dspy.LM)."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, overload

import msgspec

from dspex._dspy_import import load_dspy
from dspex.errors import ConfigError

if TYPE_CHECKING:
    import dspy

    from dspex.lm._embedded import LocalLM

__all__ = ["LM"]

# Request settings that have their own LM field (or are set per call).
_OWN_FIELDS = frozenset(
    {
        "model",
        "messages",
        "temperature",
        "max_tokens",
        "max_completion_tokens",
        "api_key",
        "api_base",
        "base_url",
        "timeout",
        "num_retries",
        "cache",
    }
)
# dspy.LM settings the native client does not support (yet).
_UNSUPPORTED = frozenset(
    {
        "stream",
        "stream_options",
        "rollout_id",
        "headers",
        "extra_headers",
        "api_version",
        "azure_ad_token_provider",
        "organization",
        "project",
        "extra_query",
        "custom_llm_provider",
        "prompt_cache",
    }
)
_REASONING = re.compile(
    r"^(?:o[1345](?:-(?:mini|nano|pro))?(?:-\d{4}-\d{2}-\d{2})?|gpt-5(?:\.\d+)*(?!-chat)(?:-.*)?)$"
)
DEFAULT_TIMEOUT = 600.0
"""Seconds per request attempt: the OpenAI SDK's default, which dspy.LM's LiteLLM path uses."""


MASK = "***"
"""What a masked API key reads as."""
MIN_SECRET_LENGTH = 8
"""API keys shorter than this are placeholders (``"test"``, ``"local"``, ``"sk-x"``), not
secrets: masking them in text would mangle ordinary words, so only longer keys are masked."""


@overload
def redact(value: str, secret: str | None) -> str: ...
@overload
def redact(value: object, secret: str | None) -> Any: ...
def redact(value: object, secret: str | None) -> Any:
    """``value`` with every occurrence of ``secret`` in its strings, nested in dicts, lists and
    tuples too, replaced by ``***``: the one place dspex masks API keys in text (errors, logs,
    shadow divergences). Unchanged when ``secret`` is None or shorter than
    :data:`MIN_SECRET_LENGTH`."""
    if secret is None or len(secret) < MIN_SECRET_LENGTH:
        return value
    if isinstance(value, str):
        return value.replace(secret, MASK)
    if isinstance(value, Mapping):
        return {k: redact(v, secret) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v, secret) for v in value]
    return value


def api_key_of(lm: LM | None) -> str | None:
    """The API key requests with ``lm`` carry: its ``api_key``, else ``OPENAI_API_KEY`` (read
    now, as the native client and LiteLLM read it)."""
    if lm is None:
        return None
    return lm.api_key if lm.api_key is not None else os.environ.get("OPENAI_API_KEY")


def is_reasoning_model(model: str) -> bool:
    """Whether DSPy treats ``model`` as an OpenAI reasoning model (o1, o3, gpt-5, ...)."""
    return _REASONING.match(model.rsplit("/", 1)[-1].lower()) is not None


class LM(msgspec.Struct, frozen=True):
    """An LM endpoint and its default request settings, shared by both implementations.

    ``model`` follows DSPy's ``"openai/<name>"`` convention; the native client sends ``<name>``
    as the wire ``model``, as LiteLLM does. The defaults mirror ``dspy.LM``: ``temperature`` and
    ``max_tokens`` of None are not sent (the server decides), 3 retries. ``timeout`` bounds each
    attempt, in seconds (on the dspy side, DSPy's default engine bounds each read, write and
    wait for a connection by it, as lm15 does). ``extra`` holds further request body fields
    (``top_p``, ``stop``, ``seed``, ``response_format``, ...), like ``dspy.LM(**kwargs)``. With
    ``api_base`` or ``api_key`` None the native client reads ``OPENAI_BASE_URL`` (or
    ``OPENAI_API_BASE``) and ``OPENAI_API_KEY`` when it first uses the LM, as LiteLLM does.

    ``dspy_engine`` picks the engine of DSPy's that the dspy implementation sends requests by.
    ``"auto"`` (the default): DSPy 3.4.1's own default engine (lm15, without LiteLLM, about
    half the CPU per call) for the requests whose body the native client writes as it does
    (text turns, and ``temperature``, ``max_tokens``, ``top_p``, ``seed``, the penalties and
    ``stop``), DSPy's LiteLLM engine for all others (``n``, tools, ``response_format``, media,
    streams, other parameters, OpenAI reasoning models, a base URL set in the environment).
    ``"litellm"``: every request by LiteLLM's engine. Either way the native client sends what
    the dspy implementation sends, byte for byte.

    ``cache`` (DSPy's default, True): answer a request from the runtime's response cache when
    an identical one was answered before (see ``Config.cache``; a call's ``cache=`` overrides
    it).

    The API key never appears in ``repr``/``str``; note that ``msgspec.json.encode(lm)`` does
    include it.
    """

    model: str
    api_base: str | None = None
    api_key: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    timeout: float = DEFAULT_TIMEOUT
    num_retries: int = 3
    extra: dict[str, Any] = msgspec.field(default_factory=dict)
    dspy_engine: Literal["litellm", "auto"] = "auto"
    cache: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError("LM.model must be a non-empty string like 'openai/<name>'")
        provider, slash, rest = self.model.partition("/")
        if slash and not (provider and rest):
            raise ConfigError(f"LM.model {self.model!r} must look like 'openai/<name>'")
        _check_number("temperature", self.temperature, minimum=0.0, optional=True)
        _check_int("max_tokens", self.max_tokens, minimum=1, optional=True)
        _check_number("timeout", self.timeout, minimum=0.0, optional=False, strict=True)
        _check_int("num_retries", self.num_retries, minimum=0, optional=False)
        for name, value in (("api_base", self.api_base), ("api_key", self.api_key)):
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"LM.{name} must be a string or None, got {type(value).__name__}")
        if self.api_base is not None and not self.api_base.startswith(("http://", "https://")):
            raise ConfigError(
                f"LM.api_base must be an http:// or https:// URL, got {self.api_base!r}"
            )
        if self.dspy_engine not in ("litellm", "auto"):
            raise ConfigError(
                f"LM.dspy_engine must be 'litellm' or 'auto', got {self.dspy_engine!r}"
            )
        if not isinstance(self.cache, bool):
            raise ConfigError(f"LM.cache must be True or False, got {self.cache!r}")
        if not isinstance(self.extra, dict) or not all(isinstance(k, str) for k in self.extra):
            raise ConfigError("LM.extra must be a dict of request body fields keyed by name")
        for key in self.extra:
            if key in _OWN_FIELDS:
                raise ConfigError(f"LM.extra[{key!r}]: use the LM field or the per-call option")
            if key in _UNSUPPORTED:
                raise ConfigError(f"LM.extra[{key!r}] is not supported by dspex")
        if is_reasoning_model(self.model) and (
            (self.temperature and self.temperature != 1.0)
            or (self.max_tokens and self.max_tokens < 16000)
        ):
            raise ConfigError(
                f"{self.model} is an OpenAI reasoning model: DSPy requires temperature=1.0 or None "
                "and max_tokens >= 16000 or None"
            )

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={value!r}" for name, value in self.__rich_repr__())
        return f"LM({fields})"

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        """Fields for ``repr`` and rich, with the API key masked whatever its length."""
        fields = [(name, getattr(self, name)) for name in self.__struct_fields__]
        return [(n, MASK if n == "api_key" and v is not None else v) for n, v in fields]

    @property
    def provider(self) -> str:
        """The provider prefix of ``model`` (``"openai"`` when there is none)."""
        provider, slash, _ = self.model.partition("/")
        return provider if slash else "openai"

    @property
    def wire_model(self) -> str:
        """The ``model`` field sent on the wire: ``model`` without its ``openai/`` prefix."""
        provider, slash, rest = self.model.partition("/")
        return rest if slash and provider == "openai" else self.model

    def to_dspy(self, **overrides: Any) -> dspy.LM:
        """An equivalent ``dspy.LM`` (imports dspy), sending the same request body.

        With ``dspy_engine="auto"`` it sends each request by DSPy's default engine or by its
        LiteLLM engine as the native client does (see ``dspy_engine``), with ``"litellm"`` by
        LiteLLM's; DSPy's own cache is off: dspex's response cache, which both implementations
        share, answers below it (``from_dspy`` of it reads back this LM's ``cache`` and
        ``dspy_engine``). ``overrides`` go to ``dspy.LM``.
        DSPy is imported by dspex's one shared import (this thread waits for it).
        """
        dspy = load_dspy()
        kwargs: dict[str, Any] = {
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "num_retries": self.num_retries,
            "timeout": self.timeout,
            "cache": False,
            "engine": "litellm",
        }
        if self.api_base is not None:
            kwargs["api_base"] = self.api_base
        if self.api_key is not None:
            kwargs["api_key"] = self.api_key
        kwargs.update(self.extra)
        kwargs.update(overrides)
        from dspex.lm._engine import by_lm15

        if kwargs["engine"] == "litellm" and by_lm15(self):
            from dspex.lm._dspy_lm import EngineLM

            lm = EngineLM(self.model, **kwargs)
            lm.lm15 = dspy.LM(self.model, **{**kwargs, "engine": "auto"})
        else:
            lm = dspy.LM(self.model, **kwargs)
        lm._dspex_cache = self.cache  # dspex's own settings, for from_dspy
        lm._dspex_engine = self.dspy_engine
        return lm

    @staticmethod
    def local(model: str = "qwen2.5-coder-1.5b", **settings: Any) -> LocalLM:
        """The embedded local model, for ``Runtime(lm=dspex.LM.local())``: the runtime starts
        a supervised llama.cpp server on 127.0.0.1 and uses it as its LM (no API key, no
        network). ``settings``: ``temperature``, ``max_tokens``, ``timeout``, ``threads``,
        ``context``, ``port``. Needs ``pip install "dspex[local]"`` and ``dspex lm pull``."""
        from dspex.lm._embedded import LocalLM

        return LocalLM(model=model, **settings)

    @classmethod
    def of(cls, value: object, what: str = "lm") -> LM:
        """``value`` as an ``LM``: a dspex.LM as it is, a ``dspy.LM`` converted
        (:meth:`from_dspy`); raises ConfigError, naming ``what``, for anything else."""
        if isinstance(value, LM):
            return value
        if hasattr(value, "model") and hasattr(value, "kwargs"):  # a dspy.LM
            return cls.from_dspy(value)
        raise ConfigError(f"{what} must be a dspex.LM or a dspy.LM, got {type(value).__name__}")

    @classmethod
    def from_dspy(cls, lm: Any) -> LM:
        """The ``LM`` equivalent to a ``dspy.LM`` (read from its attributes; no dspy import)."""
        if getattr(lm, "model_type", "chat") != "chat":
            raise ConfigError(f"dspex supports chat models only, not model_type={lm.model_type!r}")
        kwargs = dict(lm.kwargs)
        kwargs.pop("rollout_id", None)  # DSPy strips it before sending
        unsupported = sorted(key for key in kwargs if key in _UNSUPPORTED)
        if unsupported:
            raise ConfigError(f"dspy.LM settings {unsupported} have no dspex equivalent")
        max_tokens = kwargs.pop("max_tokens", None)
        max_completion_tokens = kwargs.pop("max_completion_tokens", None)
        api_base = kwargs.pop("api_base", None)
        base_url = kwargs.pop("base_url", None)
        timeout = kwargs.pop("timeout", None)
        if timeout is not None and not isinstance(timeout, (int, float)):
            raise ConfigError(f"dspy.LM timeout {timeout!r} must be a number of seconds for dspex")
        return cls(
            lm.model,
            api_base=api_base if api_base is not None else base_url,
            api_key=kwargs.pop("api_key", None),
            temperature=kwargs.pop("temperature", None),
            max_tokens=max_tokens if max_tokens is not None else max_completion_tokens,
            timeout=float(timeout) if timeout is not None else DEFAULT_TIMEOUT,
            num_retries=lm.num_retries,
            extra=kwargs,
            # an LM to_dspy made: dspex's settings (DSPy's own cache is off there)
            cache=bool(getattr(lm, "_dspex_cache", getattr(lm, "cache", True))),
            dspy_engine=getattr(lm, "_dspex_engine", _engine_of(lm)),
        )


def _engine_of(lm: Any) -> Literal["litellm", "auto"]:
    """``dspy_engine`` for a ``dspy.LM``: ``"litellm"`` when it runs on LiteLLM's engine."""
    return "litellm" if getattr(lm, "engine", "auto") == "litellm" else "auto"


def _check_number(
    name: str, value: object, *, minimum: float, optional: bool, strict: bool = False
) -> None:
    if value is None and optional:
        return
    number = (
        isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    )
    if number and (value > minimum or (value == minimum and not strict)):  # type: ignore[operator]
        return
    bound = f"> {minimum}" if strict else f">= {minimum}"
    raise ConfigError(f"LM.{name} must be a finite number {bound}, got {value!r}")


def _check_int(name: str, value: object, *, minimum: int, optional: bool) -> None:
    if value is None and optional:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"LM.{name} must be an int >= {minimum}, got {value!r}")
