"""Speed of the reference, fused and official implementations, in one run.

Groups: inference of CCT-7/3x1 (batch 64) and CCT-14/7x2 at 224 px (batch 8) in float32 (with
ONNX Runtime) and mixed bfloat16, with the custom ops where they are built; the CCT-7/3x1
training step (batch 64); one layer's attention alone, fused path against the custom op;
CCT-7/3x1 training through the full CIFAR-10 augmentation pipeline against the bare step
(batch 128); the GEMM ceiling. In the default (smoke) run every row runs once at batch 2.
"""

import pytest
import tensorflow as tf

import cct_fast
import official_torch
from cct_fast import kernels
from cct_fast.torch_reference import official_module
from workloads import (CUSTOM_ROW, attention_functions, inference_functions, macs_per_image,
                       random_batch, train_step_functions, training_epoch_functions)

INFERENCE = [("cct_7_3x1_32", 64), ("cct_14_7x2_224", 8)]
PRECISIONS = {"fp32": "float32", "bf16": "mixed_bfloat16"}
_cache = {}


def _batch(smoke, batch):
    return 2 if smoke else batch


def _inference_rows(name, precision):
    key = (name, precision)
    if key not in _cache:
        _cache.clear()  # keep one workload's models alive at a time
        _cache[key] = inference_functions(name, PRECISIONS[precision])
    return _cache[key]


@pytest.mark.parametrize("precision", list(PRECISIONS))
@pytest.mark.parametrize("name, batch", INFERENCE)
@pytest.mark.parametrize("row", ["reference", "reference under XLA", "fused",
                                 "fused under XLA (CCT(jit_compile=True))", CUSTOM_ROW])
def test_inference(record, smoke, name, batch, precision, row):
    config = cct_fast.create_model(name).config
    images, _ = random_batch(config, _batch(smoke, batch))
    images = tf.constant(images)
    rows = _inference_rows(name, precision)
    if row not in rows:
        pytest.skip(f"custom ops: {kernels.unavailable_reason()}")
    function = rows[row]
    record(lambda: function(images), f"inference {name} batch {batch} {precision}", row,
           len(images), 2 * macs_per_image(config))


@pytest.mark.parametrize("precision", list(PRECISIONS))
@pytest.mark.parametrize("name, batch", INFERENCE)
def test_inference_official_pytorch(record, smoke, name, batch, precision):
    if official_module() is None:
        pytest.skip("torch and vit-pytorch are not installed")
    import torch

    config = cct_fast.create_model(name).config
    images, _ = random_batch(config, _batch(smoke, batch))
    images = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
    function = official_torch.inference_function(config, bfloat16=precision == "bf16")
    record(lambda: function(images), f"inference {name} batch {batch} {precision}",
           "official PyTorch", len(images), 2 * macs_per_image(config))


ONNX_GRAPHS = {"plain": False, "fused": True}


@pytest.mark.parametrize("graph", list(ONNX_GRAPHS))
@pytest.mark.parametrize("name, batch", INFERENCE)
def test_inference_onnxruntime(record, smoke, name, batch, graph, tmp_path):
    pytest.importorskip("tf2onnx")
    pytest.importorskip("onnxruntime")
    from cct_fast.export import load_onnx, to_onnx

    model = cct_fast.create_model(name)
    path = to_onnx(model, tmp_path / f"{name}.onnx", optimize=ONNX_GRAPHS[graph])
    predictor = load_onnx(path, providers=["CPUExecutionProvider"])
    images, _ = random_batch(model.config, _batch(smoke, batch))
    record(lambda: predictor.predict(images), f"inference {name} batch {batch} fp32",
           f"ONNX Runtime (CPU, {graph} graph)", len(images), 2 * macs_per_image(model.config))


ATTENTION_SHAPE = dict(batch=64, tokens=256, heads=4, head_dim=64)  # one CCT-7/3x1 layer


@pytest.mark.parametrize("precision", list(PRECISIONS))
@pytest.mark.parametrize("backward", [False, True], ids=["forward", "backward"])
@pytest.mark.parametrize("implementation", ["fused path", "custom op"])
def test_attention(record, smoke, implementation, backward, precision):
    """The attention of one CCT-7/3x1 layer alone: what the custom op replaces."""
    if implementation == "custom op" and kernels.ops() is None:
        pytest.skip(f"custom ops: {kernels.unavailable_reason()}")
    shape = dict(ATTENTION_SHAPE, batch=_batch(smoke, ATTENTION_SHAPE["batch"]))
    dtype = tf.bfloat16 if precision == "bf16" else tf.float32
    key = ("attention", precision)
    if key not in _cache:
        _cache.clear()
        _cache[key] = attention_functions(dtype=dtype, **shape)
    width = shape["heads"] * shape["head_dim"]
    qkv = tf.cast(tf.random.stateless_normal((shape["batch"] * shape["tokens"], 3 * width),
                                             (0, 0)), dtype)
    row = implementation + (", forward + backward" if backward else "")
    # Forward: q k^T and p v, 2 * tokens^2 * width multiply-adds each; backward: 4 more.
    flops = (12 if backward else 4) * shape["tokens"] ** 2 * width
    group = (f"attention of one layer, {shape['batch']}x{shape['tokens']} tokens, "
             f"{shape['heads']} heads of {shape['head_dim']}, {precision}"
             + (", forward + backward" if backward else ""))
    record(lambda: _cache[key][row](qkv), group, implementation, shape["batch"], flops)


TRAIN_NAME, TRAIN_BATCH = "cct_7_3x1_32", 64


@pytest.mark.parametrize("row", ["reference", "reference under XLA", "fused", "fused under XLA"])
def test_train_step(record, smoke, row):
    config = cct_fast.create_model(TRAIN_NAME).config
    images, labels = random_batch(config, _batch(smoke, TRAIN_BATCH))
    images, labels = tf.constant(images), tf.constant(labels)
    if "train" not in _cache:
        _cache.clear()
        _cache["train"] = train_step_functions(TRAIN_NAME, TRAIN_BATCH)
    function = _cache["train"][row]
    # A training step costs about three forward passes.
    record(lambda: function(images, labels), f"train step {TRAIN_NAME} batch {TRAIN_BATCH} fp32",
           row, len(images), 6 * macs_per_image(config))


def test_train_step_official_pytorch(record, smoke):
    if official_module() is None:
        pytest.skip("torch and vit-pytorch are not installed")
    import torch

    config = cct_fast.create_model(TRAIN_NAME).config
    images, labels = random_batch(config, _batch(smoke, TRAIN_BATCH))
    images = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
    labels = torch.from_numpy(labels)
    step = official_torch.train_step_function(config)
    record(lambda: step(images, labels), f"train step {TRAIN_NAME} batch {TRAIN_BATCH} fp32",
           "official PyTorch", len(images), 6 * macs_per_image(config))


EPOCH_STEPS = 4


@pytest.mark.parametrize("row", ["bare train step (augmented batches in memory)",
                                 "full augmentation pipeline (as `cct-fast train`)"])
def test_training_with_input_pipeline(record, smoke, row, tmp_path_factory):
    """The input pipeline must keep up with training: both rows run ``model.fit`` over
    ``EPOCH_STEPS`` batches of 128 with the CIFAR-10 recipe."""
    batch = _batch(smoke, 128)
    if "epoch" not in _cache:
        _cache.clear()
        _cache["epoch"] = training_epoch_functions(TRAIN_NAME, batch, EPOCH_STEPS,
                                                   tmp_path_factory.mktemp("run"))
    config = cct_fast.create_model(TRAIN_NAME).config
    record(_cache["epoch"][row], f"training {TRAIN_NAME} batch {batch} fp32, CIFAR-10 recipe",
           row, batch * EPOCH_STEPS, 6 * macs_per_image(config))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_gemm_ceiling(record, smoke, precision):
    size = 256 if smoke else 4096
    dtype = tf.bfloat16 if precision == "bf16" else tf.float32
    matrix = tf.cast(tf.random.normal((size, size)), dtype)
    matmul = tf.function(lambda a: tf.matmul(a, a))
    record(lambda: matmul(matrix).numpy(), "ceiling", f"gemm {precision}", 1, 2 * size**3)


def test_macs_of_cct_7_3x1_32_are_the_published_figure():
    assert macs_per_image(cct_fast.create_model("cct_7_3x1_32").config) / 1e9 == pytest.approx(
        1.19, abs=0.01)
