"""The fused fast path against the reference implementation, on the same weights."""

import os
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import cct_fast
import cct_fast.compute.fused
from cct_fast.core.model import rebuild

from helpers import cpu_flags, random_images, relative_error, trained_like

VARIANTS = ["cct_7_3x1_32", "cct_2_3x2_32_sine", "cvt_4_4_32", "vit_2_4_32"]


def twins(name, rng, **overrides):
    """A reference model with random weights and a fused model holding the same ones."""
    reference = cct_fast.create_model(name, implementation="reference", **overrides)
    trained_like(reference, rng)
    return reference, rebuild(reference, implementation="fused")


@pytest.mark.parametrize("name", VARIANTS)
def test_fused_logits_match_the_reference(name, rng):
    reference, fast = twins(name, rng)
    images = random_images(rng, reference, batch=3)
    assert relative_error(fast(images), reference(images)) <= 1e-5
    compiled = tf.function(lambda x: fast(x), jit_compile=True)
    assert relative_error(compiled(images), reference(images)) <= 1e-5


@pytest.mark.parametrize("name", VARIANTS)
def test_fused_gradients_match_the_reference(name, rng):
    reference, fast = twins(name, rng, dropout=0.0, attention_dropout=0.0, stochastic_depth=0.0)
    images = random_images(rng, reference, batch=3)
    labels = rng.integers(0, reference.config.num_classes, 3)

    def gradients(model):
        with tf.GradientTape() as tape:
            loss = keras.losses.sparse_categorical_crossentropy(
                labels, model(images, training=True), from_logits=True
            )
        return tape.gradient(loss, [v.value for v in model.trainable_variables])

    expected_all, actual_all = gradients(reference), gradients(fast)
    scale = max(float(np.abs(g).max()) for g in expected_all)
    pairs = zip(reference.trainable_variables, expected_all, actual_all, strict=True)
    for variable, expected, actual in pairs:
        if np.abs(expected).max() < 1e-5 * scale:
            # The sequence-pooling bias shifts every token score alike, which softmax ignores:
            # its true gradient is 0 and both sides hold rounding noise.
            np.testing.assert_allclose(actual, 0.0, atol=1e-5 * scale, err_msg=variable.path)
        else:
            assert relative_error(actual, expected) <= 1e-4, variable.path


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
@pytest.mark.parametrize("implementation", ["fused", "reference"])
def test_mixed_precision_stays_close_to_float32(policy, implementation, rng):
    exact = trained_like(cct_fast.create_model("cct_2_3x2_32", implementation="reference"), rng)
    images = random_images(rng, exact, batch=4)
    mixed = rebuild(exact, implementation=implementation, policy=policy)
    compute_dtype = policy.removeprefix("mixed_")
    assert mixed.blocks[0].self_attn.qkv.compute_dtype == compute_dtype
    assert mixed.sequence_pool.compute_dtype == mixed.head.compute_dtype == "float32"
    assert mixed.sequence_pool.attention_pool.compute_dtype == "float32"
    assert all(v.dtype == "float32" for v in mixed.weights)
    logits = mixed(images)
    assert logits.dtype == "float32"
    assert relative_error(logits, exact(images)) <= 2e-2


FLOAT32_BY_DESIGN = {"sequence_pool", "attention_pool", "head"}


def _sublayer_policies(model):
    return [(layer.name, layer.dtype_policy.name) for layer in model._flatten_layers(False)]


@pytest.mark.parametrize("name", ["cct_2_3x2_32", "text_cct_2"])
def test_dtype_is_the_models_own_and_reaches_every_sublayer(name, rng):
    """``dtype=`` as keras-hub takes it: a bfloat16 and a float32 model built side by side
    each compute as asked and the global policy is left alone; without ``dtype`` the global
    policy is the model's."""
    sizes = dict(vocab_size=50) if name.startswith("text_") else {}
    mixed = cct_fast.create_model(name, dtype="mixed_bfloat16", **sizes)
    exact = trained_like(cct_fast.create_model(name, **sizes), rng)
    assert keras.mixed_precision.global_policy().name == "float32"
    policies = _sublayer_policies(mixed)
    assert len(policies) > 20
    for layer, policy in policies:
        assert policy == ("float32" if layer in FLOAT32_BY_DESIGN else "mixed_bfloat16"), layer
    assert {policy for _, policy in _sublayer_policies(exact)} == {"float32"}

    mixed.set_weights(exact.get_weights())
    if sizes:
        inputs = (rng.integers(0, 50, (3, 64)), np.arange(64) < rng.integers(1, 64, (3, 1)))
        tokens = mixed.word_embedding(*inputs)
    else:
        inputs = random_images(rng, exact, batch=3)
        tokens = mixed.tokenizer(inputs)
    assert tokens.dtype == "bfloat16"
    logits = mixed(inputs)
    assert logits.dtype == "float32"
    error = relative_error(logits, exact(inputs))
    assert 1e-4 < error <= 2e-2  # bfloat16's rounding, neither none nor more

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        from_global = cct_fast.create_model(name, **sizes)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert _sublayer_policies(from_global) == policies


def _traced_dtypes(model, operations):
    """{(op type, dtype)} of the ``operations`` in the graph of ``model``'s forward pass, the
    functions it calls included (the fused path's XLA clusters)."""
    graph = (
        tf.function(lambda x: model(x, training=False))
        .get_concrete_function(tf.TensorSpec((2, 32, 32, 3), tf.float32))
        .graph.as_graph_def()
    )
    nodes = list(graph.node) + [n for f in graph.library.function for n in f.node_def]
    return {(n.op, tf.dtypes.as_dtype(n.attr["T"].type).name) for n in nodes if n.op in operations}


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
@pytest.mark.parametrize("implementation", ["fused", "reference"])
def test_statistics_run_in_float32_under_mixed_precision(policy, implementation):
    """Softmax, LayerNorm's mean and variance, and the sequence pooling, as traced. The one
    exception is documented and tested above: the fused path's bfloat16 attention softmax is
    oneDNN's, which sums in float32 and rounds once, where that kernel runs (AVX-512; on
    AVX2-only CPUs the softmax stays in float32)."""
    model = cct_fast.create_model("cct_2_3x2_32", implementation=implementation, dtype=policy)
    statistics = _traced_dtypes(model, {"Mean", "SquaredDifference", "Rsqrt"})
    assert {dtype for _, dtype in statistics} == {"float32"}
    assert {op for op, _ in statistics} == {"Mean", "SquaredDifference", "Rsqrt"}
    softmax = {dtype for _, dtype in _traced_dtypes(model, {"Softmax"})}
    exact = cct_fast.compute.fused.bfloat16_softmax_is_exact()
    bfloat16 = (implementation, policy) == ("fused", "mixed_bfloat16") and exact
    exception = {"bfloat16"} if bfloat16 else set()
    assert softmax == {"float32"} | exception
    pooling = _traced_dtypes(model, {"Einsum"} if implementation == "fused" else {"BatchMatMulV2"})
    assert ("Einsum" if implementation == "fused" else "BatchMatMulV2", "float32") in pooling


@pytest.mark.parametrize("name", ["cct_2_3x2_32", "vit_2_4_32"])
def test_training_steps_give_the_same_losses(name, rng):
    overrides = dict(
        num_classes=4, dropout=0.0, attention_dropout=0.0, stochastic_depth=0.0, jit_compile=True
    )
    reference, fast = twins(name, rng, **overrides)
    images = random_images(rng, reference, batch=8)
    labels = rng.integers(0, 4, 8)
    losses = []
    for model in (reference, fast):
        model.compile(
            optimizer=keras.optimizers.SGD(0.05),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        history = model.fit(images, labels, batch_size=8, epochs=4, shuffle=False, verbose=0)
        losses.append(history.history["loss"])
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-4)
    assert abs(losses[0][-1] - losses[0][0]) > 1e-3  # the steps moved the weights


def test_dropout_and_drop_path_are_active_in_fused_training(rng):
    model = cct_fast.create_model("cct_2_3x2_32", dropout=0.1, stochastic_depth=0.5)
    images = random_images(rng, model)
    np.testing.assert_array_equal(np.asarray(model(images)), np.asarray(model(images)))
    assert not np.allclose(
        np.asarray(model(images, training=True)), np.asarray(model(images, training=True))
    )


def test_weights_move_between_implementations_without_conversion(tmp_path, rng):
    fast = trained_like(cct_fast.create_model("cct_2_3x2_32"), rng)
    cct_fast.save_weights(fast, tmp_path / "w.weights.h5")
    reference = cct_fast.create_model(
        "cct_2_3x2_32", implementation="reference", weights=tmp_path / "w.weights.h5"
    )
    images = random_images(rng, fast)
    assert relative_error(fast(images), reference(images)) <= 1e-5


def test_bfloat16_attention_softmax_is_float32_softmax_rounded_once(rng):
    """On every CPU: through oneDNN's bfloat16 softmax where it is exact, through float32
    elsewhere (the next two tests)."""
    q = tf.cast(rng.standard_normal((2, 3, 50, 16)) * 2, tf.bfloat16)
    k = tf.cast(rng.standard_normal((2, 3, 50, 16)) * 2, tf.bfloat16)
    scores = tf.matmul(q, k, transpose_b=True)
    expected = tf.cast(tf.nn.softmax(tf.cast(scores, tf.float32)), tf.bfloat16)
    np.testing.assert_array_equal(
        np.asarray(cct_fast.compute.fused.attention_weights(q, k), np.float32),
        np.asarray(expected, np.float32),
    )


def test_without_onednn_bfloat16_scores_are_cast_to_float32_first():
    """TensorFlow's own bfloat16 softmax, which runs on CPUs without AVX-512 and wherever
    oneDNN is off, computes in bfloat16: the probe must see it and take float32."""
    script = """
import numpy as np, tensorflow as tf
from cct_fast.compute import fused
scores = tf.cast(tf.random.stateless_normal((4, 64), (1, 2)) * 20, tf.bfloat16)
direct = tf.nn.softmax(scores)
rounded = tf.cast(tf.nn.softmax(tf.cast(scores, tf.float32)), tf.bfloat16)
q = tf.reshape(scores, (1, 1, 4, 64))
weights = fused.attention_weights(q, tf.eye(64, batch_shape=(1, 1), dtype=tf.bfloat16))
print(fused.bfloat16_softmax_is_exact(), bool(tf.reduce_all(direct == rounded)),
      bool(tf.reduce_all(weights[0, 0] == rounded)))
"""
    environment = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="0", TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=environment
    )
    assert done.returncode == 0, done.stderr
    probe, kernel_exact, weights_exact = done.stdout.split()
    assert (probe, kernel_exact, weights_exact) == ("False", "False", "True")


def test_onednn_bfloat16_softmax_is_taken_on_avx512_cpus():
    """The 2.4x faster shortcut, where oneDNN's kernel runs (measured on an AVX512_BF16 CPU,
    and on it with oneDNN limited to AVX512_CORE)."""
    if not {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= cpu_flags():
        pytest.skip("oneDNN's exact bfloat16 softmax runs on AVX-512 CPUs; this one has none")
    if os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "0":
        pytest.skip("TF_ENABLE_ONEDNN_OPTS=0: oneDNN's kernels are off")
    assert cct_fast.compute.fused.bfloat16_softmax_is_exact()
    spec = tf.TensorSpec((1, 2, 8, 16), tf.bfloat16)
    graph = (
        tf.function(cct_fast.compute.fused.attention_weights)
        .get_concrete_function(spec, spec)
        .graph
    )
    softmax = [op for op in graph.get_operations() if op.type == "Softmax"]
    assert [op.get_attr("T") for op in softmax] == [tf.bfloat16]


def test_unknown_implementation():
    with pytest.raises(
        ValueError,
        match=r"implementation must be one of \('fused', 'reference', "
        r"'custom', 'auto'\)",
    ):
        cct_fast.create_model("cct_2_3x2_32", implementation="cuda")


def test_a_tensorflow_without_the_xla_context_check_warns(monkeypatch):
    """Without it, nested XLA functions would be compiled again at every training step."""
    from cct_fast.compute import xla

    monkeypatch.setattr(xla, "GraphOrParentsInXlaContext", None)
    xla._warn_no_xla_context.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="compiled again at every training step"):
            assert xla.in_xla_context() is False
    finally:
        xla._warn_no_xla_context.cache_clear()


def test_jit_compile_without_a_gpu_warns_once_and_still_compiles(monkeypatch):
    from cct_fast.compute import xla

    if tf.config.list_logical_devices("GPU"):
        pytest.skip("a GPU is visible: XLA is the fast path there")
    xla.warn_if_no_gpu.cache_clear()
    with pytest.warns(RuntimeWarning, match=r"without a GPU.*0\.89x in float32"):
        model = cct_fast.create_model("cct_2_3x2_32", jit_compile=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per process
        cct_fast.create_model("cct_2_3x2_32", jit_compile=True)
    assert model.jit_compile is True
    model.compile(loss="mse")
    assert model.jit_compile is True
