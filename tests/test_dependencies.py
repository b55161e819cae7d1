"""The suite runs with everything the README's test command installs, or fails saying what is
missing. Modules that test optional parts skip where a package is absent (a user's machine
may lack torch), so without these checks a missing test dependency would pass CI as skips."""

import importlib.util
import re
import sys
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


def _export(tmp_path):
    import cct_fast
    from cct_fast.export import to_onnx

    to_onnx(cct_fast.create_model("cct_2_3x2_32"), tmp_path / "model.onnx")


def _load_onnx(tmp_path):
    from cct_fast.export import load_onnx

    load_onnx(tmp_path / "model.onnx")


def _read_old_torch_file(tmp_path):
    from cct_fast.weights import pth

    pth._read_legacy_checkpoint(tmp_path / "old.pth")


@pytest.mark.parametrize(
    "module, use, says",
    [
        ("tf2onnx", _export, "ONNX export needs the tf2onnx package: pip install 'cct-fast[onnx]'"),
        (
            "onnxruntime",
            _load_onnx,
            "ONNX export needs the onnxruntime package: pip install 'cct-fast[onnx]'",
        ),
        ("torch", _read_old_torch_file, "reading it needs the torch package: pip install"),
    ],
)
def test_a_missing_optional_package_is_one_error_type_that_says_how_to_install_it(
    tmp_path, monkeypatch, module, use, says
):
    """Text, TFDS and TensorBoard are checked where they are used (test_text_encoder,
    test_tfds, test_train); each raises the same MissingDependency, an ImportError too."""
    from cct_fast.errors import MissingDependency

    monkeypatch.setitem(sys.modules, module, None)  # its import fails
    with pytest.raises(MissingDependency, match=re.escape(says)) as missing:
        use(tmp_path)
    assert isinstance(missing.value, ImportError)
    assert not list(tmp_path.iterdir())  # nothing written
