"""What the benchmarks run: models in each implementation and precision, and their cost."""

import keras
import numpy as np
import tensorflow as tf

import cct_fast
from cct_fast.core.costs import costs
from cct_fast.core.model import rebuild


def macs_per_image(config) -> int:
    """Multiply-accumulates of one forward pass, the attention matmuls included."""
    return costs(config).macs


def keras_models(name, policy, implementations=("reference", "fused"), **options):
    """Models of ``name`` (built with ``options``) under ``policy`` in each implementation,
    holding the same weights."""
    first = cct_fast.create_model(name, implementation=implementations[0], dtype=policy, **options)
    return [first] + [rebuild(first, implementation=i, policy=policy) for i in implementations[1:]]


CUSTOM_ROW = 'custom ops (implementation="custom")'


def inference_functions(name, policy, xla=True, **options):
    """Row name -> a function of a batch that returns materialised logits; the rows under XLA
    only with ``xla``. The custom-ops row is there only where the library is built."""
    from cct_fast.compute import custom_ops

    implementations = ("reference", "fused") + (("custom",) if custom_ops.ops() else ())
    reference, fused, *custom = keras_models(name, policy, implementations, **options)

    def compiled(model, jit):
        function = tf.function(lambda x: model(x, training=False), jit_compile=jit)
        return lambda x: function(x).numpy()

    rows = {"reference": compiled(reference, False)}
    if xla:
        rows["reference under XLA"] = compiled(reference, True)
    rows["fused"] = compiled(fused, False)
    if xla:
        rows["fused under XLA (CCT(jit_compile=True))"] = compiled(fused, True)
    if custom:
        rows[CUSTOM_ROW] = compiled(custom[0], False)
    return rows


ATTENTION_SHAPE = dict(batch=64, tokens=256, heads=4, head_dim=64)  # one CCT-7/3x1 layer


def attention_functions(batch, tokens, heads, head_dim, dtype, mask=None):
    """Row name -> a function of a packed qkv (batch * tokens, 3 * width) tensor running the
    attention of one layer, forward or forward and backward: the fused path's steps (split
    heads, scores, softmax, weighted sum, merge heads) or the custom op; with ``mask``
    (batch, tokens) booleans, both masked as the text models mask their padding."""
    from cct_fast.compute import custom_ops, fused

    scale = head_dim**-0.5

    def fused_path(qkv):
        return fused.attention(qkv, heads, scale, mask=mask)

    def custom_op(qkv):
        return custom_ops.attention(qkv, heads, scale, mask=mask)

    def with_backward(function):
        def run(qkv):
            with tf.GradientTape() as tape:
                tape.watch(qkv)
                out = function(qkv)
            return tape.gradient(out, qkv, output_gradients=tf.ones_like(out))

        return run

    rows = {}
    for name, function in (("fused path", fused_path), ("custom op", custom_op)):
        for suffix, step in (("", function), (", forward + backward", with_backward(function))):
            compiled = tf.function(step)
            rows[name + suffix] = lambda x, compiled=compiled: compiled(x).numpy()
    return rows


def train_step_functions(name, batch, with_custom=False, xla=True, **options):
    """Row name -> a function of (inputs, labels) running one AdamW step: reference and fused,
    each also under XLA with ``xla``; ``with_custom`` adds the custom ops, and fused and custom
    under mixed_bfloat16 (where the library is built)."""
    from cct_fast.compute import custom_ops

    jits = (False, True) if xla else (False,)
    variants = [(i, jit, "float32") for i in ("reference", "fused") for jit in jits]
    if with_custom and custom_ops.ops() is not None:
        variants += [("custom", False, "float32")]
        variants += [(i, False, "mixed_bfloat16") for i in ("fused", "custom")]
    functions = {}
    for implementation, jit, policy in variants:
        model = cct_fast.create_model(name, implementation=implementation, dtype=policy, **options)
        model.compile(
            optimizer=keras.optimizers.AdamW(5e-4, weight_decay=0.06),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=jit,
        )
        row = CUSTOM_ROW if implementation == "custom" else implementation
        row += (" under XLA" if jit else "") + (", mixed_bfloat16" if policy != "float32" else "")
        functions[row] = lambda x, y, model=model: model.train_on_batch(x, y)
    return functions


def training_epoch_functions(name, batch, steps, folder, seed=0, flowers=False):
    """Row name -> a function that trains ``steps`` steps of ``batch`` images with
    ``model.fit``, as ``cct-fast train`` does: through the full augmentation pipeline, or from
    that pipeline's batches already in memory (the bare train step). Both rows train the same
    model with the same compiled step.

    The CIFAR-10 recipe (random resized crop, flip, RandAugment, MixUp/CutMix, label
    smoothing) on synthetic uint8 32x32 images; with ``flowers``, the official Flowers-102
    config (``cct_7-7x2_flowers102``: random bilinear/bicubic crops to 224 px and the rest)
    on JPEG files of Flowers-102's typical size (500x375), decoded on the fly."""
    from cct_fast.core.cards import DATASETS
    from cct_fast.data.image_data import Dataset, Split
    from cct_fast.train import Run
    from cct_fast.train.recipe import make_recipe

    rng = np.random.default_rng(seed)
    count = batch * steps
    if flowers:
        recipe = make_recipe("cct_7-7x2_flowers102", model=name, batch_size=batch)
        split = Split(_photo_files(rng, count, folder / "images"), rng.integers(0, 102, count))
        facts = DATASETS["flowers102"]
    else:
        recipe = make_recipe(model=name, dataset="cifar10", batch_size=batch)
        images = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
        split = Split(images, rng.integers(0, 10, count))
        facts = DATASETS["cifar10"]
    classes = [str(i) for i in range(facts.num_classes)]
    synthetic = Dataset("synthetic", split, split, classes, facts.mean, facts.std)
    run = Run(folder / "run", recipe, verbose=0, dataset=synthetic)
    in_memory = run.epoch_batches(0).cache()
    for _ in in_memory:  # fill the cache
        pass

    def train(batches):
        return lambda: run.model.fit(batches, epochs=1, shuffle=False, verbose=0)

    return {
        "bare train step (augmented batches in memory)": train(in_memory),
        "full augmentation pipeline (as `cct-fast train`)": train(run.epoch_batches(0)),
    }


def _photo_files(rng, count, folder, size=(375, 500)):
    """``count`` JPEG files of smooth random content (photo-like sizes, not noise)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        coarse = rng.uniform(0, 255, (12, 16, 3)).astype("float32")
        image = tf.cast(tf.image.resize(coarse, size), tf.uint8)
        path = folder / f"{i}.jpg"
        path.write_bytes(tf.io.encode_jpeg(image, quality=90).numpy())
        paths.append(str(path))
    return paths


def padding_mask(batch, length, rng):
    """(batch, length) booleans: a random number of real positions per row (at least one),
    padding after them."""
    lengths = rng.integers(1, length + 1, batch)
    return np.arange(length)[None, :] < lengths[:, None]


def random_text_batch(config, batch, seed=0):
    """Random ids with a random number of real words per text (at least one), padded after."""
    rng = np.random.default_rng(seed)
    mask = padding_mask(batch, config.seq_len, rng)
    ids = np.where(mask, rng.integers(0, config.vocab_size, (batch, config.seq_len)), 1)
    return ids.astype("int32"), mask, rng.integers(0, config.num_classes, batch)


def random_batch(config, batch, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((batch, *config.image_size, 3)).astype("float32")
    return images, rng.integers(0, config.num_classes, batch)
