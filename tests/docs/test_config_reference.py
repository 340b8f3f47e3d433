"""The documentation's configuration reference is generated from the code: every setting and
every ``DSPEX_*`` variable is in it, each with its description, so it cannot drift."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path
from types import ModuleType

import msgspec
import pytest

from dspex import config

ROOT = Path(__file__).resolve().parents[2]
STRUCTS = (
    config.Config,
    config.AdaptiveConfig,
    config.CircuitConfig,
    config.Rollout,
    config.Shadow,
)


@pytest.fixture(scope="module")
def hook() -> ModuleType:
    path = ROOT / "docs" / "_hooks" / "config_reference.py"
    spec = importlib.util.spec_from_file_location("config_reference", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("kind", STRUCTS, ids=lambda k: k.__name__)
def test_every_field_has_a_description(hook: ModuleType, kind: type[msgspec.Struct]) -> None:
    docs = hook.field_docs()[kind.__name__]
    for field in kind.__struct_fields__:
        assert docs.get(field), f"{kind.__name__}.{field} needs a docstring under it"


def test_the_reference_lists_every_setting_and_variable(hook: ModuleType) -> None:
    text = hook.reference()
    for name in config.Config.__struct_fields__:
        assert f"| `{name}`<br>" in text
    for prefix, kind in (("adaptive", config.AdaptiveConfig), ("circuit", config.CircuitConfig)):
        for name in kind.__struct_fields__:
            assert f"| `{prefix}.{name}`<br>" in text
    for prefix, kind in (("rollout", config.Rollout), ("shadow", config.Shadow)):
        for name in kind.__struct_fields__:
            assert f"| `{prefix}.<type>.{name}`<br>" in text
    for variable in [*config.VARIABLES, *config.OTHER_VARIABLES]:
        assert f"`{variable}`" in text
    for module_type in config.MODULE_TYPES:
        assert f"`{module_type}`" in text


def test_defaults_shown_are_the_code_defaults(hook: ModuleType) -> None:
    text = hook.reference()
    assert "| `call_timeout`<br>`DSPEX_CALL_TIMEOUT` | `None` |" in text
    drain = config.Config().drain_timeout
    assert f"| `drain_timeout`<br>`DSPEX_DRAIN_TIMEOUT` | `{drain!r}` |" in text
    assert "| `adaptive`<br>`DSPEX_ADAPTIVE_*` | `AdaptiveConfig()` |" in text


def test_the_configuration_page_keeps_its_marker(hook: ModuleType) -> None:
    page = (ROOT / "docs" / "configuration.md").read_text()
    assert hook.MARKER in page


def test_nothing_cites_a_design_file_missing_from_the_repository() -> None:
    name = "DESIGN" + ".md"  # spelled apart so this file does not cite it either
    tracked = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if tracked.returncode != 0:
        pytest.skip("not a git checkout")
    files = [ROOT / f for f in tracked.stdout.splitlines() if (ROOT / f).is_file()]
    if (ROOT / name).exists():
        return
    citing = [str(f.relative_to(ROOT)) for f in files if name in f.read_text(errors="ignore")]
    assert citing == []
