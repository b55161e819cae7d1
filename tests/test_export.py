"""ONNX export and ONNX Runtime inference."""

import numpy as np
import pytest

import cct_fast
from cct_fast import export
from cct_fast.cli import main as cli
from helpers import relative_error

pytest.importorskip("tf2onnx")
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = cct_fast.create_model("cct_2_3x2_32")
    path = tmp_path_factory.mktemp("onnx") / "cct2.onnx"
    export.to_onnx(model, path)
    return model, path


def _cpu(path):
    return export.load_onnx(path, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize(
    "name, overrides",
    [
        ("cct_2_3x2_32_sine", {}),
        ("cct_2_3x2_32", {"positional_embedding": "none"}),
        ("cvt_2_4_32", {}),
        ("vit_2_4_32", {}),
        ("cct_2_3x2_32", {"include_top": False}),
    ],
)
def test_exported_variants_match_keras_at_dynamic_batch_sizes(name, overrides, tmp_path, rng):
    model = cct_fast.create_model(name, **overrides)
    predictor = _cpu(export.to_onnx(model, tmp_path / "m.onnx"))
    for batch in (1, 5):
        images = rng.standard_normal((batch, 32, 32, 3)).astype("float32")
        assert relative_error(predictor.predict(images), model(images)) <= 1e-4


def test_model_without_positional_embedding_exports_any_image_size(tmp_path, rng):
    model = cct_fast.create_model("cct_2_3x2_32", positional_embedding="none")
    predictor = _cpu(export.to_onnx(model, tmp_path / "m.onnx"))
    images = rng.standard_normal((2, 48, 40, 3)).astype("float32")
    assert relative_error(predictor.predict(images), model(images)) <= 1e-4


def test_graph_uses_standard_onnx_operators_only(exported):
    import onnx

    graph = onnx.load(exported[1]).graph
    assert {node.domain for node in graph.node} <= {"", "ai.onnx"}
    assert "Erfc" not in {node.op_type for node in graph.node}
    assert graph.input[0].name == "images"


def test_default_providers_fall_back_to_the_cpu_with_one_warning(exported, rng):
    with pytest.warns(UserWarning, match="CUDAExecutionProvider is not available"):
        predictor = export.load_onnx(exported[1])
    assert predictor.providers == ["CPUExecutionProvider"]
    images = rng.standard_normal((3, 32, 32, 3)).astype("float32")
    assert relative_error(predictor.predict(images), exported[0](images)) <= 1e-4


def test_fixed_batch_size(tmp_path, rng):
    model = cct_fast.create_model("cct_2_3x2_32")
    predictor = _cpu(export.to_onnx(model, tmp_path / "m.onnx", batch_size=4))
    assert predictor.predict(rng.standard_normal((4, 32, 32, 3)).astype("float32")).shape == (4, 10)
    with pytest.raises(ValueError, match=r"Expected images of shape \(4, 32, 32, 3\)"):
        predictor.predict(np.zeros((5, 32, 32, 3), np.float32))


def test_bad_batches_are_refused(exported):
    predictor = _cpu(exported[1])
    with pytest.raises(ValueError, match=r"\('batch', 32, 32, 3\) \(NHWC\); got \(2, 3, 32, 32\)"):
        predictor.predict(np.zeros((2, 3, 32, 32), np.float32))
    with pytest.raises(TypeError, match="float images; got uint8"):
        predictor.predict(np.zeros((2, 32, 32, 3), np.uint8))


def test_unknown_provider(exported):
    with pytest.raises(ValueError, match="Unknown or unavailable execution provider.*TPUProvider"):
        export.load_onnx(exported[1], providers=["TPUProvider"])


def test_a_file_that_is_not_onnx(tmp_path):
    (tmp_path / "x.onnx").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="is not a loadable ONNX model"):
        _cpu(tmp_path / "x.onnx")


def test_failed_verification_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(export, "FP32_TOLERANCE", -1.0)  # no graph can pass
    with pytest.raises(export.ExportError, match="does not reproduce"):
        export.to_onnx(cct_fast.create_model("cct_2_3x2_32"), tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_cli_export_from_a_keras_file(tmp_path, rng):
    model = cct_fast.create_model("cvt_2_4_32", num_classes=3)
    model.save(tmp_path / "m.keras")
    output = tmp_path / "m.onnx"
    assert cli(["export", str(tmp_path / "m.keras"), "-o", str(output)]) == 0
    images = rng.standard_normal((2, 32, 32, 3)).astype("float32")
    assert relative_error(_cpu(output).predict(images), model(images)) <= 1e-4


def test_cli_export_error_is_reported(tmp_path, capsys):
    assert cli(["export", "cct_9", "-o", str(tmp_path / "m.onnx")]) == 2
    assert "Unknown model name 'cct_9'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
