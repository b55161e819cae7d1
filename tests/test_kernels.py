"""The custom ops (kernels/): forward and gradients against the reference attention and
pooling, odd shapes, numeric gradients, bad input, and the fallbacks of implementation="custom".

The README's test command builds the library (CCT_FAST_BUILD_KERNELS=1), so CI runs these; a
checkout without it skips them with the reason. A library that was built but does not load
fails them: it is not a reason to skip.
"""

import os
import shutil
import warnings

import ml_dtypes
import numpy as np
import pytest
import tensorflow as tf

import cct_fast
from cct_fast.compute import custom_ops, dispatch, fused, reference
from cct_fast.core.model import rebuild

from helpers import assert_refused, cpu_flags, relative_error, trained_like

pytestmark = pytest.mark.skipif(
    not custom_ops.LIBRARY.exists(), reason=str(custom_ops.unavailable_reason())
)


def test_the_built_library_loads():
    assert custom_ops.ops() is not None, custom_ops.unavailable_reason()


def value_and_gradient(function, x, cotangent):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = function(x)
        loss = tf.reduce_sum(tf.cast(y, tf.float32) * cotangent)
    return y, tape.gradient(loss, x)


@pytest.mark.parametrize(
    "batch, tokens, heads, head_dim",
    [
        (2, 256, 4, 64),  # CCT-7/3x1
        (3, 1, 2, 32),  # one token
        (2, 37, 3, 128),  # tokens not a multiple of any tile
        (2, 65, 2, 20),  # head_dim not a multiple of the vector width
        (1, 259, 1, 64),
    ],
)
def test_attention_matches_the_reference_forward_and_backward(batch, tokens, heads, head_dim, rng):
    qkv = tf.constant(rng.standard_normal((batch, tokens, 3 * heads * head_dim)), tf.float32)
    cotangent = tf.constant(rng.standard_normal((batch, tokens, heads * head_dim)), tf.float32)
    scale = head_dim**-0.5
    out, grad = value_and_gradient(lambda x: custom_ops.attention(x, heads, scale), qkv, cotangent)
    expected, expected_grad = value_and_gradient(
        lambda x: reference.attention(x, heads, scale), qkv, cotangent
    )
    assert relative_error(out, expected) <= 1e-5
    assert relative_error(grad, expected_grad) <= 1e-5


@pytest.mark.parametrize(
    "dtype, batch, tokens, heads, head_dim",
    [
        ("float32", 4, 64, 2, 64),  # text_cct_2's attention at seq_len 64
        ("float32", 3, 37, 3, 20),
        ("bfloat16", 3, 70, 2, 64),
    ],
)
def test_masked_attention_matches_the_reference_forward_and_backward(
    dtype, batch, tokens, heads, head_dim, rng
):
    """A key-padding mask as the text models pass it: real tokens first, rows of one real
    token and of none padded, padded queries attending uniformly (reference.masked_scores)."""
    qkv = tf.constant(rng.standard_normal((batch, tokens, 3 * heads * head_dim)), dtype)
    cotangent = tf.constant(rng.standard_normal((batch, tokens, heads * head_dim)), tf.float32)
    lengths = rng.integers(1, tokens + 1, batch)
    lengths[:2] = 1, tokens
    mask = tf.constant(np.arange(tokens)[None, :] < lengths[:, None])
    scale = head_dim**-0.5
    out, grad = value_and_gradient(
        lambda x: custom_ops.attention(x, heads, scale, mask=mask), qkv, cotangent
    )
    exact = tf.cast(qkv, tf.float64)
    expected, expected_grad = value_and_gradient(
        lambda x: reference.attention(x, heads, scale, mask=mask), exact, cotangent
    )
    tolerance = 1e-5 if dtype == "float32" else 1e-2  # bfloat16: inputs and outputs rounded
    assert relative_error(out, expected) <= tolerance
    assert relative_error(grad, expected_grad) <= tolerance
    # A padded query's scores take no gradient: its q rows get none.
    q_grad = tf.reshape(grad, (batch, tokens, 3, heads * head_dim))[:, :, 0]
    assert float(tf.reduce_max(tf.abs(tf.boolean_mask(q_grad, ~mask)))) == 0.0


def _bfloat16(x):
    """``x`` rounded to bfloat16 (to nearest even), as float32."""
    return np.asarray(x, np.float32).astype(ml_dtypes.bfloat16).astype(np.float32)


def emulated_bfloat16_attention(qkv, heads, scale, rounds_probabilities):
    """What the bfloat16 kernel documents: the bf16 inputs' products accumulated in float32,
    an exact float32 softmax, probabilities rounded to bf16 before they weigh V where the
    kernel runs vdpbf16ps (else kept in float32), the output rounded to bf16."""
    batch, tokens, width = qkv.shape[0], qkv.shape[1], qkv.shape[2] // 3
    q, k, v = qkv.reshape(batch, tokens, 3, heads, width // heads).transpose(2, 0, 3, 1, 4)
    scores = np.einsum("bhid,bhjd->bhij", q, k, dtype=np.float64).astype(np.float32) * np.float32(
        scale
    )
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    total = weights.sum(-1, keepdims=True)
    if rounds_probabilities:
        weights = _bfloat16(weights)
    out = np.einsum("bhij,bhjd->bhid", weights, v, dtype=np.float64).astype(np.float32) / total
    return _bfloat16(out.transpose(0, 2, 1, 3).reshape(batch, tokens, width))


def emulated_bfloat16_attention_gradient(qkv, out, grad_out, heads, scale, rounds_intermediates):
    """What the bfloat16 backward documents: FlashAttention's backward in float32 on the bf16
    inputs, its saved (bf16) output and the bf16 output gradient, rounded to bf16; where the
    kernel runs vdpbf16ps, the probabilities and the score gradients (scale included) are
    rounded to bf16 before their products."""
    batch, tokens, width = qkv.shape[0], qkv.shape[1], qkv.shape[2] // 3
    q, k, v = (
        qkv.astype(np.float64)
        .reshape(batch, tokens, 3, heads, width // heads)
        .transpose(2, 0, 3, 1, 4)
    )
    o, do = (
        a.astype(np.float64).reshape(batch, tokens, heads, -1).transpose(0, 2, 1, 3)
        for a in (out, grad_out)
    )
    scores = np.einsum("bhid,bhjd->bhij", q, k) * scale
    p = np.exp(scores - scores.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    grad_scores = p * (np.einsum("bhid,bhjd->bhij", do, v) - (do * o).sum(-1, keepdims=True))
    grad_scores *= scale
    if rounds_intermediates:
        p, grad_scores = _bfloat16(p), _bfloat16(grad_scores)
    grads = (
        np.einsum("bhij,bhjd->bhid", grad_scores, k),
        np.einsum("bhij,bhid->bhjd", grad_scores, q),
        np.einsum("bhij,bhid->bhjd", p, do),
    )
    return _bfloat16(
        np.stack([g.transpose(0, 2, 1, 3) for g in grads], 2).reshape(batch, tokens, 3 * width)
    )


def assert_within_one_bfloat16_ulp(actual, expected):
    """Equal almost everywhere (float32 sums in another order may round a value the other
    way), and nowhere more than one bf16 ulp apart (relative to the tensor's scale where a
    value is near zero)."""
    magnitude = np.maximum(np.abs(expected), 1e-3 * np.abs(expected).max())
    assert np.mean(actual == expected) >= 0.99
    assert np.all(np.abs(actual - expected) <= magnitude * 2.0**-7)


# head_dim 64 runs vdpbf16ps where the CPU has it; an odd head_dim, float copies of the head.
# 40: a pair tile of 16 and one of 4 in the transposes of Q and dO; 21: the float32 path.
@pytest.mark.parametrize("head_dim", [64, 40, 21])
def test_bfloat16_attention_rounds_as_documented(head_dim, rng):
    qkv = _bfloat16(rng.standard_normal((2, 50, 3 * 2 * head_dim)))
    cotangent = rng.standard_normal((2, 50, 2 * head_dim)).astype(np.float32)
    scale = head_dim**-0.5
    out, grad = value_and_gradient(
        lambda x: custom_ops.attention(x, 2, scale), tf.constant(qkv, tf.bfloat16), cotangent
    )
    assert out.dtype == tf.bfloat16 and grad.dtype == tf.bfloat16
    out = tf.cast(out, tf.float32).numpy()
    vdpbf16ps = custom_ops.cpu_isa() == "avx512_bf16" and head_dim % 2 == 0
    assert_within_one_bfloat16_ulp(out, emulated_bfloat16_attention(qkv, 2, scale, vdpbf16ps))
    assert_within_one_bfloat16_ulp(
        tf.cast(grad, tf.float32).numpy(),
        emulated_bfloat16_attention_gradient(qkv, out, _bfloat16(cotangent), 2, scale, vdpbf16ps),
    )


def test_a_custom_model_under_mixed_bfloat16_is_the_fused_one(rng):
    fused_model = trained_like(cct_fast.create_model("cct_7_3x1_32", dtype="mixed_bfloat16"), rng)
    custom = rebuild(fused_model, implementation="custom", policy="mixed_bfloat16")
    spec = tf.TensorSpec((4, 32, 32, 3), tf.float32)
    graph = tf.function(lambda x: custom(x, training=False)).get_concrete_function(spec).graph
    assert {op.get_attr("T") for op in graph.get_operations() if op.type == "CctAttention"} == {
        tf.bfloat16
    }
    images = rng.standard_normal((4, 32, 32, 3)).astype("float32")
    assert relative_error(custom(images), fused_model(images)) <= 5e-3


def test_attention_gradient_is_the_numeric_one(rng):
    qkv = tf.constant(rng.standard_normal((1, 5, 3 * 2 * 8)) * 0.5, tf.float64)
    theoretical, numeric = tf.test.compute_gradient(
        lambda x: tf.cast(custom_ops.attention(tf.cast(x, tf.float32), 2, 0.35), tf.float64),
        [qkv],
        delta=1e-2,
    )
    np.testing.assert_allclose(theoretical[0], numeric[0], atol=2e-3)


@pytest.mark.parametrize("batch, tokens, dim", [(4, 64, 256), (3, 1, 32), (2, 37, 20)])
def test_sequence_pool_matches_the_fused_path(batch, tokens, dim, rng):
    x = tf.constant(rng.standard_normal((batch, tokens, dim)), tf.float32)
    kernel = tf.constant(rng.standard_normal((dim, 1)) * 0.1, tf.float32)
    bias = tf.constant([0.3], tf.float32)
    cotangent = tf.constant(rng.standard_normal((batch, dim)), tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x, kernel])
        out = custom_ops.sequence_pool(x, kernel[:, 0], bias[0])
        expected = fused.sequence_pool(x, kernel, bias)
        loss, expected_loss = (tf.reduce_sum(y * cotangent) for y in (out, expected))
    assert relative_error(out, expected) <= 1e-5
    for grad, expected_grad in zip(
        tape.gradient(loss, [x, kernel]), tape.gradient(expected_loss, [x, kernel]), strict=False
    ):
        assert relative_error(grad, expected_grad) <= 1e-5


def test_sequence_pool_gradient_is_the_numeric_one(rng):
    x = tf.constant(rng.standard_normal((2, 6, 5)), tf.float64)
    kernel = tf.constant(rng.standard_normal(5), tf.float64)

    def pool(x, kernel):
        return tf.cast(
            custom_ops.sequence_pool(
                tf.cast(x, tf.float32), tf.cast(kernel, tf.float32), tf.constant(0.1)
            ),
            tf.float64,
        )

    theoretical, numeric = tf.test.compute_gradient(pool, [x, kernel], delta=1e-2)
    for t, n in zip(theoretical, numeric, strict=False):
        np.testing.assert_allclose(t, n, atol=2e-3)


_BAD_INPUTS = [
    (
        lambda x: custom_ops.attention(x, 2, 1.0),
        (2, 12),
        r"qkv must be \(batch, tokens, 3 \* num_heads \* head_dim\), got shape \[2,12\]",
    ),
    (
        lambda x: custom_ops.attention(x, 2, 1.0),
        (2, 4, 10),
        r"qkv's last dimension \(10\) must be a positive multiple of 3 \* num_heads = 6",
    ),
    (
        lambda x: custom_ops.attention(x, 2, 1.0),
        (2, 0, 12),
        r"qkv must hold at least one token, got shape \[2,0,12\]",
    ),
    (
        lambda x: custom_ops.attention(x, 2, 1.0, mask=tf.ones((2, 5), tf.bool)),
        (2, 4, 12),
        r"mask must be \(batch, tokens\) = \(2, 4\), or \(0,\) for none, got \[2,5\]",
    ),
    (
        lambda x: custom_ops.sequence_pool(x, tf.zeros(5), tf.constant(0.0)),
        (2, 3, 4),
        r"kernel must be \(4,\), got shape \[5\]",
    ),
    (
        lambda x: custom_ops.sequence_pool(x, tf.zeros(3), tf.constant(0.0)),
        (2, 3),
        r"tokens must be \(batch, tokens >= 1, dim\), got shape \[2,3\]",
    ),
]


@pytest.mark.parametrize("graph", [False, True], ids=["eager", "graph of unknown shapes"])
@pytest.mark.parametrize("call, shape, message", _BAD_INPUTS)
def test_bad_input_gets_the_ops_own_message(call, shape, message, graph):
    """The kernels' own checks, also where no static shape lets TensorFlow check first."""
    assert_refused(call, tf.zeros(shape), message, graph)


def test_wrong_dtype_is_refused():
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match="attr 'T' of double is not in the list of allowed values: float, bfloat16, half",
    ):
        custom_ops.attention(tf.zeros((1, 4, 12), tf.float64), 2, 1.0)
    # float16 has GPU kernels only: on the CPU, TensorFlow names the kernels there are.
    with tf.device("/CPU:0"), pytest.raises(tf.errors.NotFoundError, match="T in \\[DT_HALF\\]"):
        custom_ops.attention(tf.zeros((1, 4, 12), tf.float16), 2, 1.0)


@pytest.mark.parametrize("name", ["cct_7_3x1_32", "cvt_7_4_32", "vit_7_4_32"])
def test_custom_models_match_the_reference(name, rng):
    reference_model = cct_fast.create_model(name, implementation="reference")
    custom = rebuild(reference_model, implementation="custom")
    images = rng.standard_normal((3, 32, 32, 3)).astype("float32")
    assert_same_logits_and_gradients(custom, reference_model, images)


def assert_same_logits_and_gradients(model, reference_model, inputs):
    """``model`` computes ``reference_model``'s logits and weight gradients (1e-5)."""

    def logits_and_gradients(model):
        with tf.GradientTape() as tape:
            logits = model(inputs, training=False)
            loss = tf.reduce_sum(logits**2)
        return logits, tape.gradient(loss, model.trainable_variables)

    logits, grads = logits_and_gradients(model)
    expected, expected_grads = logits_and_gradients(reference_model)
    assert relative_error(logits, expected) <= 1e-5
    flat = tf.concat([tf.reshape(g, [-1]) for g in grads], 0)
    expected_flat = tf.concat([tf.reshape(g, [-1]) for g in expected_grads], 0)
    assert relative_error(flat, expected_flat) <= 1e-5


def test_a_custom_text_model_runs_the_masked_op_and_matches_the_reference(rng):
    reference_model = cct_fast.create_model(
        "text_cct_2", vocab_size=50, seq_len=24, num_classes=3, implementation="reference"
    )
    custom = rebuild(reference_model, implementation="custom")
    lengths = rng.integers(1, 25, 4)
    mask = np.arange(24)[None, :] < lengths[:, None]
    ids = np.where(mask, rng.integers(2, 50, (4, 24)), 1).astype("int32")
    assert_same_logits_and_gradients(custom, reference_model, (ids, mask))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback message: the masked call runs the op
        specs = (tf.TensorSpec((4, 24), tf.int32), tf.TensorSpec((4, 24), tf.bool))
        types = _op_types(lambda i, m: custom((i, m), training=True), *specs)
    assert "CctAttention" in types


def test_each_device_runs_the_dtypes_it_has_kernels_for_and_says_why_not(monkeypatch):
    monkeypatch.setattr(custom_ops, "has_cuda_kernels", lambda: True)
    dispatch._explain_once.cache_clear()
    monkeypatch.setattr(dispatch, "_device_type", lambda: "GPU")
    assert [dispatch.runs_custom("custom", d) for d in ("float32", "bfloat16", "float16")] == [
        True,
        True,
        True,
    ]
    monkeypatch.setattr(dispatch, "_device_type", lambda: "CPU")
    assert dispatch.runs_custom("custom", "bfloat16")
    message = "the CPU kernels take float32 or bfloat16, not float16"
    with pytest.warns(RuntimeWarning, match=message):
        assert not dispatch.runs_custom("custom", "float16")
    dispatch._explain_once.cache_clear()


def _op_types(function, *args):
    graph = tf.function(function).get_concrete_function(*args).graph
    return {op.type for op in graph.get_operations()}


def test_custom_models_run_the_ops_and_fall_back_where_they_cannot(monkeypatch):
    model = cct_fast.create_model("cct_2_3x2_32", implementation="custom")
    spec = tf.TensorSpec((2, 32, 32, 3), tf.float32)
    assert {"CctAttention", "CctSequencePool"} <= _op_types(
        lambda x: model(x, training=False), spec
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # training at attention_dropout 0.1 runs the ops too
        types = _op_types(lambda x: model(x, training=True), spec)
    assert {"CctAttention", "CctSequencePool"} <= types
    dispatch._explain_once.cache_clear()
    with pytest.warns(RuntimeWarning, match="XLA"):
        xla = tf.function(lambda x: model(x, training=False), jit_compile=True)
        logits = xla(tf.zeros((2, 32, 32, 3)))
    np.testing.assert_allclose(logits, model(tf.zeros((2, 32, 32, 3))), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
@pytest.mark.parametrize("training", [False, True], ids=["inference", "training"])
def test_auto_takes_the_custom_ops_only_where_they_were_measured_faster(policy, training):
    """Training steps on AVX-512 CPUs were measured 1.3x the fused path with the custom ops
    (bfloat16 only with AVX512_BF16); inference and AVX2 were not (dispatch.py says where)."""
    model = cct_fast.create_model("cct_2_3x2_32", implementation="auto", dtype=policy)
    spec = tf.TensorSpec((2, 32, 32, 3), tf.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # auto says nothing
        types = _op_types(lambda x: model(x, training=training), spec)
    isa, dtype = custom_ops.cpu_isa(), "bfloat16" if policy == "mixed_bfloat16" else "float32"
    measured_faster = training and (
        (isa == "avx512_bf16") or (isa == "avx512" and dtype == "float32")
    )
    assert ("CctAttention" in types) == measured_faster
    assert ("CctLayerNorm" in types) == measured_faster


def test_a_missing_library_gives_the_fused_path_and_one_message(monkeypatch, tmp_path):
    monkeypatch.setattr(custom_ops, "LIBRARY", tmp_path / "libcct_fast_ops.so")
    dispatch._explain_once.cache_clear()
    custom_ops._loaded.cache_clear()
    try:
        model = cct_fast.create_model("cct_2_3x2_32", implementation="custom")
        with pytest.warns(RuntimeWarning, match="not built.*CCT_FAST_BUILD_KERNELS=1") as record:
            model(tf.zeros((1, 32, 32, 3)))
            model(tf.zeros((1, 32, 32, 3)))
        assert len([w for w in record if "custom ops" in str(w.message)]) == 1
    finally:
        custom_ops._loaded.cache_clear()  # the next test loads the real library again


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="no CUDA compiler on this machine")
def test_the_build_compiled_the_cuda_kernels_where_nvcc_exists():
    """CI has nvcc but no GPU: the CUDA sources must still compile into the library."""
    assert custom_ops.has_cuda_kernels()
    assert custom_ops.LIBRARY.with_name("libcct_fast_cuda_harness.so").exists()


def test_onnx_exports_of_custom_models_hold_no_custom_op(tmp_path):
    pytest.importorskip("tf2onnx")
    import onnx

    from cct_fast.export import to_onnx

    model = cct_fast.create_model("cct_2_3x2_32", implementation="custom")
    path = to_onnx(model, tmp_path / "model.onnx")
    op_types = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "MatMul" in op_types and not any(t.startswith("Cct") for t in op_types)


def test_the_cpu_kernels_use_the_widest_instructions_this_cpu_has_or_the_one_named():
    """The widest, or the narrower one CCT_FAST_KERNEL_ISA names (tests/test_kernel_isas.py
    runs this suite so)."""
    flags = cpu_flags()
    expected = (
        "avx512_bf16"
        if {"avx512f", "avx512bw", "avx512vl", "avx512_bf16"} <= flags
        else "avx512"
        if {"avx512f", "avx512bw", "avx512vl"} <= flags
        else "avx2"
        if {"avx2", "fma"} <= flags
        else "baseline"
    )
    assert custom_ops.cpu_isa() == (os.environ.get(custom_ops.ISA_VARIABLE) or expected)
