"""The suite runs with everything the README's test command installs, or fails saying what is
missing. Modules that test optional parts skip where a package is absent (a user's machine
may lack torch), so without these checks a missing test dependency would pass CI as skips."""

import importlib.util
import re
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
# Installed by the README's test command with --no-deps, beside the dev extra; the official
# architecture's tests skip without them (conftest.py's `official` fixture).
WITHOUT_DEPENDENCIES = ["vit-pytorch", "einops"]
FIX = "the suite needs what the README's test command installs"


def _requirements():
    """The core and dev requirements of cct-fast, as its installed metadata declares them."""
    declared = [Requirement(text) for text in metadata.requires("cct-fast") or []]
    return [
        requirement
        for requirement in declared
        if requirement.marker is None or requirement.marker.evaluate({"extra": "dev"})
    ]


def _skipped_without():
    """Every module a test or benchmark module skips without (``pytest.importorskip``)."""
    files = [*ROOT.glob("tests/*.py"), *ROOT.glob("benchmarks/*.py")]
    names = {m for f in files for m in re.findall(r'importorskip\("([\w.]+)"', f.read_text())}
    return sorted(names)


@pytest.mark.parametrize(
    "requirement",
    _requirements() + [Requirement(name) for name in WITHOUT_DEPENDENCIES],
    ids=str,
)
def test_each_core_and_dev_requirement_is_installed(requirement):
    try:
        version = metadata.version(requirement.name)
    except metadata.PackageNotFoundError:
        pytest.fail(f"{requirement.name} is not installed: {FIX}.")
    assert requirement.specifier.contains(version, prereleases=True), (
        f"{requirement.name} {version} does not satisfy {requirement}"
    )


@pytest.mark.parametrize("module", _skipped_without())
def test_every_module_the_suite_can_skip_without_is_installed(module):
    """Also what a dev extra that lost a package would no longer install."""
    assert importlib.util.find_spec(module) is not None, f"{module} is not importable: {FIX}."


def test_the_lists_checked_above_are_read_from_the_project():
    assert any(r.marker is not None for r in _requirements()), "no dev requirement declared"
    assert {"torch", "tensorflow_text", "onnxruntime"} <= set(_skipped_without())
