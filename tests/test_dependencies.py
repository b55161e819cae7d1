"""The suite runs with everything the README's test command installs, or fails saying what is
missing. Modules that test optional parts skip where a package is absent (a user's machine
may lack torch), so without this check a missing test dependency would pass CI as skips."""

from importlib import metadata

import pytest
from packaging.requirements import Requirement

# Installed by the README's test command with --no-deps, beside the dev extra.
WITHOUT_DEPENDENCIES = ["vit-pytorch", "einops"]


def _requirements():
    """The core and dev requirements of cct-fast, as its installed metadata declares them."""
    declared = [Requirement(text) for text in metadata.requires("cct-fast") or []]
    return [
        requirement
        for requirement in declared
        if requirement.marker is None or requirement.marker.evaluate({"extra": "dev"})
    ] + [Requirement(name) for name in WITHOUT_DEPENDENCIES]


@pytest.mark.parametrize("requirement", _requirements(), ids=str)
def test_each_core_and_dev_requirement_is_installed(requirement):
    try:
        version = metadata.version(requirement.name)
    except metadata.PackageNotFoundError:
        pytest.fail(
            f"{requirement.name} is not installed: the suite needs what the README's test "
            "command installs (pip install -e '.[dev]', then vit-pytorch with --no-deps)."
        )
    assert requirement.specifier.contains(version, prereleases=True), (
        f"{requirement.name} {version} does not satisfy {requirement}"
    )


def test_the_requirements_come_from_the_installed_metadata():
    """Core and dev ones both: the parametrized test above checks what this list holds."""
    names = {requirement.name for requirement in _requirements()}
    assert {"tensorflow", "pyyaml", "torch", "tensorflow-text", "onnxruntime", "ruff"} <= names
