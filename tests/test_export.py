"""ONNX export and ONNX Runtime inference."""

import warnings

import numpy as np
import pytest

import cct_fast
from cct_fast import export
from cct_fast.cli import main as cli

from helpers import relative_error, trained_like

pytest.importorskip("tf2onnx")
onnxruntime = pytest.importorskip("onnxruntime")

# ONNX Runtime against Keras in float32, on weights at a trained model's scales.
FLOAT32_PARITY = 1e-5
# ONNX Runtime float16 against Keras mixed_float16 (same weights): both round to float16 at
# different places, about 4e-4 plain and 8e-4 fused measured.
FLOAT16_PARITY = 2e-3


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
    model = trained_like(cct_fast.create_model(name, **overrides), rng)
    predictor = _cpu(export.to_onnx(model, tmp_path / "m.onnx"))
    for batch in (1, 5):
        images = rng.standard_normal((batch, 32, 32, 3)).astype("float32")
        assert relative_error(predictor.predict(images), model(images)) <= FLOAT32_PARITY


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


FUSED_VARIANTS = [
    ("cct_2_3x2_32", {}),
    ("cvt_2_4_32", {}),
    ("vit_2_4_32", {}),
    ("cct_2_3x2_32_sine", {"include_top": False}),
]


def _operator_counts(path):
    import onnx

    counts = {}
    for node in onnx.load(path).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


@pytest.mark.parametrize("name, overrides", FUSED_VARIANTS)
def test_optimized_export_runs_each_layer_as_one_fused_operator(name, overrides, tmp_path, rng):
    model = trained_like(cct_fast.create_model(name, **overrides), rng)
    path = export.to_onnx(model, tmp_path / "m.onnx", optimize=True)
    counts, blocks = _operator_counts(path), model.config.num_layers
    assert counts["Attention"] == counts["BiasGelu"] == blocks
    # Every LayerNorm but the first absorbs the residual Add before it.
    assert counts["SkipLayerNormalization"] == 2 * blocks
    assert not {"Erf", "Sqrt", "GlobalAveragePool", "Split"} & set(counts)
    predictor = _cpu(path)
    for batch in (1, 5):
        images = rng.standard_normal((batch, 32, 32, 3)).astype("float32")
        assert relative_error(predictor.predict(images), model(images)) <= FLOAT32_PARITY


@pytest.mark.parametrize("optimize", [False, True])
def test_float16_export_computes_what_keras_mixed_float16_computes(optimize, tmp_path, rng):
    import onnx

    from cct_fast.core.model import rebuild

    model = trained_like(cct_fast.create_model("cct_2_3x2_32"), rng)
    twin = rebuild(model, implementation="fused", policy="mixed_float16")
    path = export.to_onnx(model, tmp_path / "m.onnx", dtype="float16", optimize=optimize)
    graph = onnx.load(path).graph
    dtypes = {t.name: t.data_type for t in graph.initializer if len(t.dims) == 2}
    qkv = [dtype for name, dtype in dtypes.items() if "qkv" in name]
    head = [dtype for name, dtype in dtypes.items() if "/head" in name]
    assert qkv and set(qkv) == {onnx.TensorProto.FLOAT16}
    assert head == [onnx.TensorProto.FLOAT]  # the head stays float32, as under mixed_float16
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    images = rng.standard_normal((4, 32, 32, 3)).astype("float32")
    logits = _cpu(path).predict(images)
    assert logits.dtype == np.float32
    assert relative_error(logits, twin(images)) <= FLOAT16_PARITY


def test_layers_missing_from_the_graph_are_left_alone(exported):
    import onnx

    from cct_fast.export.fusion import fuse_encoder

    proto = onnx.load(exported[1])
    other = cct_fast.CCT.from_config({**exported[0].get_config(), "name": "another_model"})
    fused, skipped = fuse_encoder(proto, other)
    assert len(skipped) == 6 * 2 + 1 and skipped[0] == "another_model/block_0/pre_norm"
    assert "Attention" not in {node.op_type for node in fused.graph.node}


def test_unknown_dtype(tmp_path):
    with pytest.raises(
        ValueError, match=r"dtype must be one of \['float32', 'float16', 'int8'\]; got 'bfloat16'"
    ):
        export.to_onnx(cct_fast.create_model("cct_2_3x2_32"), tmp_path / "m.onnx", dtype="bfloat16")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("providers", [None, ["CUDAExecutionProvider", "CPUExecutionProvider"]])
def test_listed_providers_fall_back_to_the_cpu_with_one_warning(exported, rng, providers):
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predictor = export.load_onnx(exported[1], providers=providers)
    assert [str(w.message) for w in caught] == [
        "CUDAExecutionProvider not available (install onnxruntime-gpu with CUDA 12); running on "
        "CPUExecutionProvider."
    ]
    assert predictor.providers == ["CPUExecutionProvider"]
    images = rng.standard_normal((3, 32, 32, 3)).astype("float32")
    assert relative_error(predictor.predict(images), exported[0](images)) <= 1e-4


def test_fixed_batch_size(tmp_path, rng):
    model = cct_fast.create_model("cct_2_3x2_32")
    predictor = _cpu(export.to_onnx(model, tmp_path / "m.onnx", batch_size=4))
    images = rng.standard_normal((4, 32, 32, 3)).astype("float32")
    logits = predictor.predict(images)
    assert logits.shape == (4, 10) and relative_error(logits, model(images)) <= FLOAT32_PARITY
    with pytest.raises(ValueError, match=r"Expected images of shape \(4, 32, 32, 3\)"):
        predictor.predict(np.zeros((5, 32, 32, 3), np.float32))


def test_bad_batches_are_refused(exported):
    predictor = _cpu(exported[1])
    with pytest.raises(ValueError, match=r"\('batch', 32, 32, 3\) \(NHWC\); got \(2, 3, 32, 32\)"):
        predictor.predict(np.zeros((2, 3, 32, 32), np.float32))
    with pytest.raises(TypeError, match="float images; got uint8"):
        predictor.predict(np.zeros((2, 32, 32, 3), np.uint8))


def test_no_available_provider(exported):
    with pytest.raises(
        ValueError,
        match=r"None of the execution providers \['TPUProvider'\] is "
        r"available; this onnxruntime offers \[.*CPUExecution",
    ):
        export.load_onnx(exported[1], providers=["TPUProvider"])


def test_no_images_give_no_rows_of_logits(exported):
    logits = _cpu(exported[1]).predict(np.zeros((0, 32, 32, 3), np.float32))
    assert logits.shape == (0, 10) and logits.dtype == np.float32


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(opset=9), "opset 9 cannot export the graph: choose one from 13 to 18"),
        (dict(opset=19), "opset 19 cannot export the graph: choose one from 13 to 18"),
        (
            dict(opset=16, optimize=True),
            "opset 16 cannot export a fused graph: choose one from 17 to 18",
        ),
        (
            dict(batch_size=0),
            "batch_size must be a positive integer, or None for a dynamic batch; got 0",
        ),
        (dict(batch_size=2.5), "batch_size must be a positive integer.*got 2.5"),
    ],
)
def test_export_settings_out_of_range_are_refused(tmp_path, arguments, message):
    with pytest.raises(export.ExportError, match=message):
        export.to_onnx(cct_fast.create_model("cct_2_3x2_32"), tmp_path / "m.onnx", **arguments)
    assert list(tmp_path.iterdir()) == []


def test_cli_export_settings_out_of_range(tmp_path, capsys):
    for flags, message in (
        (["--opset", "9"], "choose one from 13 to 18"),
        (["--batch-size", "0"], "batch_size must be a positive integer"),
    ):
        assert cli(["export", "cct_2_3x2_32", "-o", str(tmp_path / "m.onnx"), *flags]) == 2
        assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_non_square_export_matches_keras(tmp_path, rng):
    model = cct_fast.create_model("cct_2_3x2_32", img_size=(32, 48))
    predictor = _cpu(export.to_onnx(model, tmp_path / "m.onnx"))
    images = rng.standard_normal((2, 32, 48, 3)).astype("float32")
    assert relative_error(predictor.predict(images), model(images)) <= 1e-5


def test_a_file_that_is_not_onnx(tmp_path):
    (tmp_path / "x.onnx").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="is not a loadable ONNX model"):
        _cpu(tmp_path / "x.onnx")


def test_failed_verification_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setitem(export.onnx_export.TOLERANCES, "float32", -1.0)  # no graph can pass
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


def test_cli_fp16_optimized_export(tmp_path, rng, capsys):
    output = tmp_path / "m.onnx"
    assert cli(["export", "cct_2_3x2_32", "-o", str(output), "--fp16", "--optimize"]) == 0
    assert "(float16, fused)" in capsys.readouterr().out
    assert _operator_counts(output)["Attention"] == 2


def test_cli_export_error_is_reported(tmp_path, capsys):
    assert cli(["export", "cct_9", "-o", str(tmp_path / "m.onnx")]) == 2
    assert "Unknown model name 'cct_9'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "providers, tf32, expected",
    [
        (None, False, [("CUDAExecutionProvider", {"use_tf32": "0"}), "CPUExecutionProvider"]),
        (None, True, [("CUDAExecutionProvider", {"use_tf32": "1"}), "CPUExecutionProvider"]),
        (
            [("CUDAExecutionProvider", {"use_tf32": "1", "device_id": "1"})],
            False,
            [("CUDAExecutionProvider", {"use_tf32": "1", "device_id": "1"})],
        ),
        (["CPUExecutionProvider"], False, ["CPUExecutionProvider"]),
    ],
)
def test_float32_stays_float32_on_cuda_unless_asked(
    exported, monkeypatch, providers, tf32, expected
):
    """ONNX Runtime's CUDA provider multiplies float32 in TF32 by default (relative error
    3.7e-4 against Keras on an H200); load_onnx turns that off unless asked."""
    passed = []
    session_class = onnxruntime.InferenceSession

    def recording_session(path, sess_options, providers):
        passed.append(providers)
        return session_class(path, sess_options, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(
        onnxruntime,
        "get_available_providers",
        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"],
    )
    monkeypatch.setattr(onnxruntime, "InferenceSession", recording_session)
    predictor = export.load_onnx(exported[1], providers=providers, tf32=tf32)
    assert passed == [expected]
    assert predictor.providers == ["CPUExecutionProvider"]
