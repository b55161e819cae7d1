"""Where the time of one CCT encoder layer goes: each step timed alone, graph mode vs XLA.

    python benchmarks/profile_layer.py [--batch 64] [--tokens 256] [--dim 256] [--heads 4]

Prints milliseconds per step for float32 and bfloat16, with GFLOP/s for the matmuls, so that
the share of each step in ``pytest benchmarks --benchmark-only``'s layer time can be read off,
and writes them as the profile block of RESULTS.md.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from cct_fast.compute import custom_ops, fused  # noqa: E402

from results_file import write_block  # noqa: E402


def best_milliseconds(function, *args, repeats=3, calls=8):
    function(*args)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            result = function(*args)
        np.asarray(result)  # waits for a tensor; a function may return numpy already
        best = min(best, (time.perf_counter() - start) / calls)
    return best * 1e3


def steps(batch, tokens, dim, heads, dtype):
    """(name, function, arguments, flops) for each step of a fused encoder layer."""
    hidden, head_dim = 2 * dim, dim // heads

    def normal(*shape):
        return tf.cast(tf.random.normal(shape, stddev=0.05), dtype)

    rows, gamma, beta = normal(batch * tokens, dim), tf.ones(dim), tf.zeros(dim)
    q = normal(batch, heads, tokens, head_dim)
    scores = normal(batch, heads, tokens, tokens)
    w_qkv, w_proj, w_1, w_2 = (
        normal(dim, 3 * dim),
        normal(dim, dim),
        normal(dim, hidden),
        normal(hidden, dim),
    )
    bias, pre_activation = tf.zeros(hidden), normal(batch * tokens, hidden)
    graph, xla = tf.function, lambda f: tf.function(f, jit_compile=True)
    gemm = 2 * batch * tokens * dim
    return [
        ("qkv projection", graph(lambda x: fused.linear(x, w_qkv)), (rows,), 3 * gemm * dim),
        (
            "split heads",
            graph(lambda x: fused.split_heads(tf.reshape(x, (batch, tokens, -1)), heads, 0.125)[0]),
            (fused.linear(rows, w_qkv),),
            None,
        ),
        (
            "q k^T",
            graph(lambda a: tf.matmul(a, a, transpose_b=True)),
            (q,),
            2 * batch * heads * tokens * tokens * head_dim,
        ),
        (
            "softmax (float32), oneDNN",
            graph(lambda s: tf.nn.softmax(tf.cast(s, tf.float32))),
            (scores,),
            None,
        ),
        (
            "softmax (float32), XLA",
            xla(lambda s: tf.nn.softmax(tf.cast(s, tf.float32))),
            (scores,),
            None,
        ),
        (
            "probabilities v",
            graph(lambda s, v: tf.matmul(s, v)),
            (scores, q),
            2 * batch * heads * tokens * tokens * head_dim,
        ),
        ("merge heads", graph(lambda x: fused.merge_heads(x, tokens)), (q,), None),
        (
            "output projection + bias",
            graph(lambda x: fused.linear(x, w_proj, gamma)),
            (rows,),
            gemm * dim,
        ),
        (
            "layer norm, XLA (x2 per layer)",
            graph(lambda x: fused.layer_norm(x, gamma, beta)),
            (rows,),
            None,
        ),
        (
            "layer norm, tf.nn.moments graph",
            graph(lambda x: fused._layer_norm_float32(tf.cast(x, tf.float32), gamma, beta)),
            (rows,),
            None,
        ),
        *residual_layer_norm_rows(rows, gamma, beta),
        ("linear1", graph(lambda x: fused.linear(x, w_1)), (rows,), gemm * hidden),
        (
            "bias + exact GELU, XLA",
            graph(lambda h: fused.bias_gelu(h, bias)),
            (pre_activation,),
            None,
        ),
        (
            "bias + exact GELU, graph",
            graph(lambda h: tf.nn.gelu(h + tf.cast(bias, h.dtype), approximate=False)),
            (pre_activation,),
            None,
        ),
        *bias_gelu_rows(pre_activation, bias),
        (
            "linear2 + bias",
            graph(lambda h: fused.linear(h, w_2, gamma)),
            (pre_activation,),
            gemm * hidden,
        ),
    ]


def forward_backward(form, *constants):
    """form(x, *constants) and its gradient in x, as one tf.function."""

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = form(x, *constants)
        return tape.gradient(y, x, output_gradients=y)

    return step


def bias_gelu_rows(pre_activation, bias):
    """linear1's bias + exact GELU as the custom op (where the library is built), and forward
    and backward in the fused path's XLA cluster and in the op."""
    rows = [
        (
            "bias + GELU fwd+bwd, XLA cluster",
            forward_backward(fused.bias_gelu, bias),
            (pre_activation,),
            None,
        )
    ]
    if custom_ops.ops() is None:
        return rows
    custom = custom_ops.bias_gelu
    return [
        ("bias + exact GELU, custom op", tf.function(custom), (pre_activation, bias), None),
        *rows,
        ("bias + GELU fwd+bwd, custom op", forward_backward(custom, bias), (pre_activation,), None),
    ]


def residual_layer_norm_rows(rows, gamma, beta):
    """norm1(x + branch), forward and backward, in each form the module could take: the fused
    path's XLA cluster, plain graph ops, and the custom op (where the library is built)."""
    forms = {
        "XLA cluster": fused.residual_layer_norm,
        "graph ops": lambda x, r, g, b: tf.cast(
            fused._layer_norm_float32(tf.cast(x, tf.float32) + tf.cast(r, tf.float32), g, b),
            x.dtype,
        ),
    }
    if custom_ops.ops() is not None:
        forms["custom op"] = lambda x, r, g, b: custom_ops.layer_norm(
            x, g, b, fused.LAYER_NORM_EPSILON, residual=r
        )

    return [
        (
            f"residual + norm fwd+bwd, {name}",
            forward_backward(lambda x, form=form: form(x, x * 0.5, gamma, beta)),
            (rows,),
            None,
        )
        for name, form in forms.items()
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    args = parser.parse_args()
    lines = []
    for dtype in (tf.float32, tf.bfloat16):
        lines.append(
            f"{dtype.name}: batch {args.batch}, {args.tokens} tokens, width "
            f"{args.dim}, {args.heads} heads"
        )
        for name, function, arguments, flops in steps(
            args.batch, args.tokens, args.dim, args.heads, dtype
        ):
            ms = best_milliseconds(function, *arguments)
            rate = f"{flops / ms / 1e6:6.0f} GFLOP/s" if flops else ""
            lines.append(f"  {name:36s} {ms:7.2f} ms  {rate}".rstrip())
            print(lines[-1])
        lines.append("")
    command = " ".join(["python benchmarks/profile_layer.py", *sys.argv[1:]])
    write_block(
        "profile",
        command,
        "### One encoder layer, each step timed alone\n\n```\n"
        + "\n".join(lines).rstrip()
        + "\n```",
    )


if __name__ == "__main__":
    main()
