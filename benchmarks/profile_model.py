"""Where one model's inference goes, stage by stage, against the official model's same stages.

    python benchmarks/profile_model.py [--model cct_14_7x2_224] [--batch 8 32]

cct_fast runs its custom path in mixed_bfloat16: the ``implementation="custom"`` model's own
layers through the custom steps of :mod:`cct_fast.compute.dispatch`, each stage one
tf.function. PyTorch runs the official model's modules cast to bfloat16, eagerly, with
``scaled_dot_product_attention`` for the attention, which is what torch.compile's inductor
turns the official attention into on a CPU. torch.compile runs the same oneDNN GEMMs and
convolutions as eager PyTorch and fuses the elementwise steps between them, so the GEMM and
convolution rows say where cct_fast's kernels lose, and the rest where its glue does. The
encoder rows are the first layer's, once; the estimate multiplies them by the number of layers
and is set against the whole model, timed as one call (and, for PyTorch, under torch.compile).
Writes the block profile-<model> of RESULTS.md.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import cct_fast  # noqa: E402
from cct_fast.compute import custom_ops, dispatch, fused  # noqa: E402
from cct_fast.core.costs import costs  # noqa: E402
from cct_fast.testing.official_torch import official_model  # noqa: E402

from profile_layer import best_milliseconds  # noqa: E402
from results_file import write_block  # noqa: E402
from workloads import random_batch  # noqa: E402


def stage_functions(model, torch_model, images, nchw):
    """[(stage, uses per forward pass, GFLOP of one use, cct_fast function, PyTorch function)],
    each function taking no arguments; ``nchw`` is ``images`` as the official model takes
    them."""
    import torch
    import torch.nn.functional as F

    config, steps = model.config, dispatch.CUSTOM
    block, official = model.blocks[0], torch_model.classifier.blocks[0]
    batch = images.shape[0]
    heads, dim = config.num_heads, config.embedding_dim
    graph = tf.function

    tokenizer = graph(lambda im: model.tokenizer(im))
    x = tokenizer(images)
    tokens = x.shape[1]
    qkv = steps.dense(block.self_attn.qkv, x)
    attended = steps.attention(qkv, heads, (dim // heads) ** -0.5)
    flat = tf.reshape(x, (-1, dim))
    hidden = fused.linear(flat, block.linear1.kernel)

    with torch.inference_mode():
        t_x = torch_model.tokenizer(nchw)
        t_qkv = official.self_attn.qkv(t_x)
        t_hidden = official.linear1(t_x)

    def t_attention(qkv_rows):
        q, k, v = qkv_rows.reshape(batch, tokens, 3, heads, -1).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return out.transpose(1, 2).reshape(batch, tokens, dim)

    def t_head(rows):
        rows = torch_model.classifier.norm(rows)
        weights = F.softmax(torch_model.classifier.attention_pool(rows), dim=1)
        return torch_model.classifier.fc((weights.transpose(-1, -2) @ rows).squeeze(-2))

    def tf_head(rows):
        return model.head(model.sequence_pool(steps.layer_norm(model.norm, rows)))

    macs = costs(config, include_top=False)  # one image's
    gemm = 2 * batch * tokens * dim / 1e9
    hidden_dim, layers = config.feedforward_dim, config.num_layers
    stages = [
        (
            "tokenizer: convolutions, ReLU, pools",
            1,
            2 * batch * macs.convolutions / 1e9,
            tokenizer,
            torch_model.tokenizer,
            (images,),
            (nchw,),
        ),
        (
            "pre-norm (LayerNorm)",
            layers,
            None,
            graph(lambda r: steps.layer_norm(block.pre_norm, r)),
            official.pre_norm,
            (x,),
            (t_x,),
        ),
        (
            "qkv projection",
            layers,
            gemm * 3 * dim,
            graph(lambda r: steps.dense(block.self_attn.qkv, r)),
            official.self_attn.qkv,
            (x,),
            (t_x,),
        ),
        (
            "attention",
            layers,
            2 * batch * macs.attention_matmuls / layers / 1e9,
            graph(lambda q: steps.attention(q, heads, (dim // heads) ** -0.5)),
            t_attention,
            (qkv,),
            (t_qkv,),
        ),
        (
            "output projection + bias",
            layers,
            gemm * dim,
            graph(lambda r: steps.dense(block.self_attn.proj, r)),
            official.self_attn.proj,
            (attended,),
            (t_x,),
        ),
        (
            "residual + norm1 (LayerNorm)",
            layers,
            None,
            graph(lambda r: steps.residual_layer_norm(block.norm1, r, r, block.drop_path, False)),
            lambda r: official.norm1(r + r),
            (x,),
            (t_x,),
        ),
        (
            "linear1",
            layers,
            gemm * hidden_dim,
            graph(lambda r: fused.linear(r, block.linear1.kernel)),
            lambda r: F.linear(r, official.linear1.weight),
            (flat,),
            (t_x,),
        ),
        (
            "bias + exact GELU",
            layers,
            None,
            graph(lambda h: custom_ops.bias_gelu(h, block.linear1.bias)),
            lambda h: F.gelu(h + official.linear1.bias),
            (hidden,),
            (t_hidden,),
        ),
        (
            "linear2 + bias",
            layers,
            gemm * hidden_dim,
            graph(lambda h: steps.dense(block.linear2, h)),
            official.linear2,
            (hidden,),
            (t_hidden,),
        ),
        ("residual add", layers, None, graph(lambda r: r + r), lambda r: r + r, (x,), (t_x,)),
        (
            "head: final norm, sequence pool, classifier",
            1,
            None,
            graph(tf_head),
            t_head,
            (x,),
            (t_x,),
        ),
    ]
    return [
        (name, uses, gflop, lambda f=f, a=a: f(*a), torch_call(t, b))
        for name, uses, gflop, f, t, a, b in stages
    ]


def torch_call(function, arguments):
    import torch

    def run():
        with torch.inference_mode():
            function(*arguments)

    return run


def profile(name, batch):
    """The table of one batch size, as Markdown lines."""
    import torch

    model = cct_fast.create_model(name, implementation="custom", dtype="mixed_bfloat16")
    images, _ = random_batch(model.config, batch)
    images = tf.constant(images)
    whole = tf.function(lambda im: model(im, training=False))
    torch_model = official_model(model.config).eval().to(torch.bfloat16)
    nchw = torch.from_numpy(images.numpy().transpose(0, 3, 1, 2).copy()).bfloat16()
    lines = [
        f"#### {name}, batch {batch}, bfloat16",
        "",
        "| stage | x per pass | cct_fast ms | PyTorch ms | cct_fast GFLOP/s | PyTorch GFLOP/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    totals = np.zeros(2)
    for stage, uses, gflop, ours, theirs in stage_functions(model, torch_model, images, nchw):
        times = np.array([best_milliseconds(ours), best_milliseconds(theirs)])
        totals += uses * times
        rates = [f"{gflop / t * 1e3:.0f}" if gflop else "" for t in times]
        lines.append(
            f"| {stage} | {uses} | {times[0]:.2f} | {times[1]:.2f} | " + " | ".join(rates) + " |"
        )
        print(lines[-1], flush=True)
    lines.append(f"| sum of the stages | | {totals[0]:.1f} | {totals[1]:.1f} | | |")
    compiled = torch.compile(torch_model, dynamic=False)
    whole_ms = [
        best_milliseconds(whole, images),
        best_milliseconds(torch_call(torch_model, (nchw,))),
        best_milliseconds(torch_call(compiled, (nchw,))),
    ]
    lines.append(
        f"| whole model, one call (PyTorch under torch.compile: {whole_ms[2]:.1f}) | | "
        f"{whole_ms[0]:.1f} | {whole_ms[1]:.1f} | | |"
    )
    print(lines[-1], flush=True)
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cct_14_7x2_224")
    parser.add_argument("--batch", type=int, nargs="+", default=[8, 32])
    args = parser.parse_args()
    lines = []
    for batch in args.batch:
        lines += profile(args.model, batch) + [""]
    command = " ".join(["python benchmarks/profile_model.py", *sys.argv[1:]])
    write_block(f"profile-{args.model}", command, "\n".join(lines))


if __name__ == "__main__":
    main()
