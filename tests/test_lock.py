"""requirements/lock.txt, the set make and CI install, covers every dependency pyproject.toml
declares, at a version its range allows: a dependency added without `make lock` fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]


def _pins() -> dict[str, list[Version]]:
    pins: dict[str, list[Version]] = {}
    for line in (ROOT / "requirements" / "lock.txt").read_text().splitlines():
        match = re.match(r"([A-Za-z0-9._-]+)==([^\s;]+)", line)
        if match:
            pins.setdefault(canonicalize_name(match[1]), []).append(Version(match[2]))
    return pins


def _declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    texts = [*project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        texts += extra
    return [r for r in map(Requirement, texts) if canonicalize_name(r.name) != "dspex"]


@pytest.mark.parametrize("requirement", _declared(), ids=str)
def test_every_declared_dependency_is_locked_within_its_range(requirement: Requirement) -> None:
    versions = _pins().get(canonicalize_name(requirement.name))
    assert versions, f"{requirement.name} is not in requirements/lock.txt: run `make lock`"
    for version in versions:  # one per Python version range, when they differ
        assert requirement.specifier.contains(version, prereleases=True), (
            f"requirements/lock.txt pins {requirement.name}=={version}, outside {requirement}: "
            "run `make lock`"
        )
