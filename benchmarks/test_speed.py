"""Speed of the reference, fused and official implementations, in one run.

One test per group, whose rows are timed interleaved (conftest.py): inference of CCT-7/3x1
(batch 64) and CCT-14/7x2 at 224 px (batch 8) in float32 (with ONNX Runtime) and mixed
bfloat16, with the custom ops; the CCT-7/3x1 training step (batch 64); one layer's attention
alone, fused path against the custom op; CCT-7/3x1 training through the full CIFAR-10
augmentation pipeline against the bare step (batch 128); the GEMM ceiling. In the default
(smoke) run every row but those compiled by XLA or torch.compile runs once at batch 2. The
text models: TextCCT-2 inference (batch 256, 64 words, a 30,000-word vocabulary) and its
training step (batch 64), against the official computation in PyTorch (the reference of
``cct_fast.testing.official_text``).
"""

import numpy as np
import pytest
import tensorflow as tf

import cct_fast
from cct_fast.compute import custom_ops
from cct_fast.testing.official_torch import official_module

import official_torch
from targets import masked_attention_group
from workloads import (
    ATTENTION_SHAPE,
    CUSTOM_ROW,
    attention_functions,
    inference_functions,
    macs_per_image,
    padding_mask,
    random_batch,
    random_text_batch,
    train_step_functions,
    training_epoch_functions,
)

INFERENCE = [("cct_7_3x1_32", 64), ("cct_14_7x2_224", 8)]
PRECISIONS = {"fp32": "float32", "bf16": "mixed_bfloat16"}


def _batch(smoke, batch):
    return 2 if smoke else batch


COMPILED_ROW = "official PyTorch, torch.compile"


def _xla(smoke):
    """Whether a group has its rows under XLA: the smoke run leaves them out, as it leaves out
    torch.compile. Compiling for XLA took 8-10 s a training-step row and 2-4 s an inference
    row on 2 cores, 68 of the smoke run's 157 s; the models under XLA are tested in
    tests/test_fused.py and tests/test_model.py."""
    return not smoke


def _official_rows(make, compiled=None, smoke=False):
    """``{"official PyTorch": make()}`` (and ``COMPILED_ROW: compiled()``), or why they cannot
    run here. The smoke run leaves torch.compile out: compiling takes a minute a model."""
    rows = {"official PyTorch": make}
    missing = {}
    if compiled is not None and smoke:
        missing[COMPILED_ROW] = "compiled in the full benchmark run only"
    elif compiled is not None:
        rows[COMPILED_ROW] = compiled
    if official_module() is None:
        return {}, {row: "torch and vit-pytorch are not installed" for row in rows}
    return {row: function() for row, function in rows.items()}, missing


def _onnx_rows(name, images, folder, smoke):
    """The ONNX Runtime rows (plain and fused graph) of model ``name`` on ``images``, or why
    they cannot run. The smoke run exports the first model only: CCT-14's two exports took 80
    of its seconds, and the export's correctness is tests/test_export.py's."""
    graphs = {"plain": False, "fused": True}
    names = {graph: f"ONNX Runtime (CPU, {graph} graph)" for graph in graphs}
    if smoke and name != INFERENCE[0][0]:
        return {}, dict.fromkeys(names.values(), "exported in the full benchmark run only")
    try:
        import onnxruntime  # noqa: F401
        import tf2onnx  # noqa: F401

        from cct_fast.export import load_onnx, to_onnx
    except ImportError:
        return {}, dict.fromkeys(names.values(), "tf2onnx or onnxruntime missing")
    rows, model = {}, cct_fast.create_model(name)
    for graph, optimize in graphs.items():
        path = to_onnx(model, folder / f"{graph}.onnx", optimize=optimize)
        predictor = load_onnx(path, providers=["CPUExecutionProvider"])
        rows[names[graph]] = lambda p=predictor: p.predict(images)
    return rows, {}


@pytest.mark.parametrize("precision", list(PRECISIONS))
@pytest.mark.parametrize("name, batch", INFERENCE)
def test_inference(time_rows, smoke, name, batch, precision, tmp_path):
    """Reference, fused, both under XLA, the custom ops, the official PyTorch model (eager and
    under torch.compile) and (fp32) ONNX Runtime on the same batch."""
    config = cct_fast.create_model(name).config
    images, _ = random_batch(config, _batch(smoke, batch))
    tensor = tf.constant(images)
    keras_rows = inference_functions(name, PRECISIONS[precision], xla=_xla(smoke))
    rows = {row: (lambda f=function: f(tensor)) for row, function in keras_rows.items()}
    missing = {} if CUSTOM_ROW in rows else {CUSTOM_ROW: str(custom_ops.unavailable_reason())}

    def official(compiled=False):
        import torch

        function = official_torch.inference_function(
            config, bfloat16=precision == "bf16", compiled=compiled
        )
        nchw = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
        return lambda: function(nchw)

    for extra, why in (
        _official_rows(official, lambda: official(compiled=True), smoke),
        _onnx_rows(name, images, tmp_path, smoke) if precision == "fp32" else ({}, {}),
    ):
        rows.update(extra)
        missing.update(why)
    time_rows(
        f"inference {name} batch {batch} {precision}",
        rows,
        len(images),
        2 * macs_per_image(config),
        missing,
    )


@pytest.mark.parametrize("precision", list(PRECISIONS))
@pytest.mark.parametrize("backward", [False, True], ids=["forward", "backward"])
def test_attention(time_rows, smoke, backward, precision):
    """The attention of one CCT-7/3x1 layer alone: the fused path against the custom op that
    replaces it."""
    shape = dict(ATTENTION_SHAPE, batch=_batch(smoke, ATTENTION_SHAPE["batch"]))
    group = (
        f"attention of one layer, {shape['batch']}x{shape['tokens']} tokens, "
        f"{shape['heads']} heads of {shape['head_dim']}, {precision}"
        f"{', forward + backward' if backward else ''}"
    )
    _time_attention(time_rows, group, precision, backward, **shape)


@pytest.mark.parametrize("precision", list(PRECISIONS))
@pytest.mark.parametrize("backward", [False, True], ids=["forward", "backward"])
def test_masked_attention(time_rows, smoke, backward, precision):
    """The masked attention of one TextCCT-2 layer (batch 256, seq_len 64: 33 tokens, 2 heads
    of 64), padding as random texts leave it: the fused path against the custom op."""
    config = cct_fast.create_model(TEXT_NAME, vocab_size=TEXT_VOCAB).config
    batch, tokens = _batch(smoke, 256), config.sequence_length
    heads, head_dim = config.num_heads, config.embedding_dim // config.num_heads
    mask = tf.constant(padding_mask(batch, tokens, np.random.default_rng(0)))
    group = masked_attention_group(batch, tokens, heads, head_dim, precision, backward)
    _time_attention(time_rows, group, precision, backward, batch, tokens, heads, head_dim, mask)


def _time_attention(
    time_rows, group, precision, backward, batch, tokens, heads, head_dim, mask=None
):
    """Time one layer's attention, the fused path against the custom op, on random qkv."""
    dtype = tf.bfloat16 if precision == "bf16" else tf.float32
    functions = attention_functions(batch, tokens, heads, head_dim, dtype, mask=mask)
    qkv = tf.cast(tf.random.stateless_normal((batch, tokens, 3 * heads * head_dim), (0, 0)), dtype)
    suffix = ", forward + backward" if backward else ""
    rows = {
        row: (lambda f=functions[row + suffix]: f(qkv))
        for row in ("fused path", "custom op")
        if custom_ops.ops() is not None or row == "fused path"
    }
    missing = {} if "custom op" in rows else {"custom op": str(custom_ops.unavailable_reason())}
    # Forward: q k^T and p v, 2 * tokens^2 * width multiply-adds each; backward: 4 more.
    flops = (12 if backward else 4) * tokens**2 * heads * head_dim
    time_rows(group, rows, batch, flops, missing)


TRAIN_NAME, TRAIN_BATCH = "cct_7_3x1_32", 64
# The smoke run's training model: each row still runs once, with compiles of seconds, not the
# 86 s that CCT-7's seven compiled train steps took in CI.
SMOKE_TRAIN_NAME = "cct_2_3x2_32"


def test_train_step(time_rows, smoke):
    """One AdamW step at the official training defaults (attention dropout 0.1, stochastic
    depth 0.1): reference, fused, both under XLA, the custom ops, fused and custom in
    mixed_bfloat16, and the official PyTorch model, eager and under torch.compile, in float32
    and bfloat16 autocast."""
    name = SMOKE_TRAIN_NAME if smoke else TRAIN_NAME
    config = cct_fast.create_model(name).config
    images, labels = random_batch(config, _batch(smoke, TRAIN_BATCH))
    steps = train_step_functions(name, TRAIN_BATCH, with_custom=True, xla=_xla(smoke))
    x, y = tf.constant(images), tf.constant(labels)
    rows = {row: (lambda f=step: f(x, y)) for row, step in steps.items()}

    def official(bfloat16=False, compiled=False):
        import torch

        step = official_torch.train_step_function(config, bfloat16=bfloat16, compiled=compiled)
        nchw, targets = (
            torch.from_numpy(images.transpose(0, 3, 1, 2).copy()),
            torch.from_numpy(labels),
        )
        return lambda: step(nchw, targets)

    extra, missing = _official_rows(official, lambda: official(compiled=True), smoke)
    rows.update(extra)
    bf16, _ = _official_rows(
        lambda: official(bfloat16=True), lambda: official(bfloat16=True, compiled=True), smoke
    )
    rows.update({f"{row}, bfloat16 autocast": function for row, function in bf16.items()})
    if CUSTOM_ROW not in rows:
        missing[CUSTOM_ROW] = str(custom_ops.unavailable_reason())
    # A training step costs about three forward passes.
    time_rows(
        f"train step {name} batch {TRAIN_BATCH} fp32",
        rows,
        len(images),
        6 * macs_per_image(config),
        missing,
    )


EPOCH_STEPS = 4


def test_training_with_input_pipeline(time_rows, smoke, tmp_path):
    """The input pipeline must keep up with training: both rows run ``model.fit`` over
    ``EPOCH_STEPS`` batches of 128 with the CIFAR-10 recipe."""
    batch = _batch(smoke, 128)
    name = SMOKE_TRAIN_NAME if smoke else TRAIN_NAME
    rows = training_epoch_functions(name, batch, EPOCH_STEPS, tmp_path)
    config = cct_fast.create_model(name).config
    time_rows(
        f"training {name} batch {batch} fp32, CIFAR-10 recipe",
        rows,
        batch * EPOCH_STEPS,
        6 * macs_per_image(config),
    )


FLOWERS_NAME, FLOWERS_BATCH, FLOWERS_STEPS = "cct_7_7x2_224_sine", 32, 3


def test_training_with_the_flowers_pipeline(time_rows, smoke, tmp_path):
    """The input pipeline must keep up at 224 px too: the official Flowers-102 config's
    augmentation from JPEG files decoded on the fly, against its batches in memory."""
    batch = _batch(smoke, FLOWERS_BATCH)
    rows = training_epoch_functions(FLOWERS_NAME, batch, FLOWERS_STEPS, tmp_path, flowers=True)
    config = cct_fast.create_model(FLOWERS_NAME).config
    time_rows(
        f"training {FLOWERS_NAME} batch {batch}, Flowers-102 recipe (mixed_bfloat16)",
        rows,
        batch * FLOWERS_STEPS,
        6 * macs_per_image(config),
    )


def test_gemm_ceiling(time_rows, smoke):
    size = 256 if smoke else 4096
    rows = {}
    for precision, dtype in (("fp32", tf.float32), ("bf16", tf.bfloat16)):
        matrix = tf.cast(tf.random.normal((size, size)), dtype)
        matmul = tf.function(lambda a: tf.matmul(a, a))
        rows[f"gemm {precision}"] = lambda m=matrix, f=matmul: f(m).numpy()
    time_rows("ceiling", rows, 1, 2 * size**3)


def test_macs_of_cct_7_3x1_32_are_the_published_figure():
    assert macs_per_image(cct_fast.create_model("cct_7_3x1_32").config) / 1e9 == pytest.approx(
        1.19, abs=0.01
    )


TEXT_NAME, TEXT_VOCAB = "text_cct_2", 30_000


def test_text_inference(time_rows, smoke):
    """TextCCT-2 on padded batches: reference, fused, both under XLA, the custom ops (masked
    attention), and the official computation in PyTorch; sentences per second."""
    batch = _batch(smoke, 256)
    model = cct_fast.create_model(TEXT_NAME, vocab_size=TEXT_VOCAB)
    ids, mask, _ = random_text_batch(model.config, batch)
    inputs = (tf.constant(ids), tf.constant(mask))
    keras_rows = inference_functions(TEXT_NAME, "float32", xla=_xla(smoke), vocab_size=TEXT_VOCAB)
    rows = {row: (lambda f=function: f(inputs)) for row, function in keras_rows.items()}

    def official():
        import torch

        function = official_torch.text_inference_function(
            TEXT_NAME, vocab_size=TEXT_VOCAB, num_classes=model.config.num_classes
        )
        return lambda: function(torch.from_numpy(ids).long(), torch.from_numpy(mask))

    extra, missing = _official_rows(official)
    rows.update(extra)
    time_rows(
        f"text inference {TEXT_NAME} batch {batch} seq_len 64 fp32",
        rows,
        batch,
        2 * macs_per_image(model.config),
        missing,
    )


def test_text_train_step(time_rows, smoke):
    """One AdamW step of TextCCT-2 at batch 64: reference, fused, both under XLA, the custom
    ops (masked attention), fused and custom under mixed_bfloat16, and the official
    computation in PyTorch."""
    batch = _batch(smoke, 64)
    config = cct_fast.create_model(TEXT_NAME, vocab_size=TEXT_VOCAB).config
    ids, mask, labels = random_text_batch(config, batch)
    steps = train_step_functions(
        TEXT_NAME, batch, with_custom=True, xla=_xla(smoke), vocab_size=TEXT_VOCAB
    )
    x, y = (tf.constant(ids), tf.constant(mask)), tf.constant(labels)
    rows = {row: (lambda f=step: f(x, y)) for row, step in steps.items()}

    def official():
        import torch

        step = official_torch.text_train_step_function(
            TEXT_NAME, vocab_size=TEXT_VOCAB, num_classes=config.num_classes
        )
        tensors = torch.from_numpy(ids).long(), torch.from_numpy(mask), torch.from_numpy(labels)
        return lambda: step(*tensors)

    extra, missing = _official_rows(official)
    rows.update(extra)
    time_rows(
        f"text train step {TEXT_NAME} batch {batch} fp32",
        rows,
        batch,
        6 * macs_per_image(config),
        missing,
    )
