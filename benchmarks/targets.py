"""The speed targets the issues set, each read off a complete benchmark run as a ratio of two
rows (``row`` of ``group`` over ``baseline_row`` of ``baseline_group``)."""

import dataclasses

from workloads import CUSTOM_ROW

INFERENCE_FP32 = "inference cct_7_3x1_32 batch 64 fp32"
INFERENCE_BF16 = "inference cct_7_3x1_32 batch 64 bf16"
LARGEST_INFERENCE_BF16 = "inference cct_14_7x2_224 batch 8 bf16"
TRAIN_STEP = "train step cct_7_3x1_32 batch 64 fp32"
PIPELINE = "training cct_7_3x1_32 batch 128 fp32, CIFAR-10 recipe"
DEPLOY = "deploy cct_7_3x1_32 batch 64 CPU"
TEXT_TRAIN_STEP = "text train step text_cct_2 batch 64 fp32"


def masked_attention_group(batch, tokens, heads, head_dim, precision, backward):
    return (
        f"masked attention of one layer, {batch}x{tokens} tokens, {heads} heads of {head_dim}, "
        f"{precision}{', forward + backward' if backward else ''}"
    )


# text_cct_2 at batch 256 and seq_len 64: 33 tokens, 2 heads of 64.
TEXT_ATTENTION = masked_attention_group(256, 33, 2, 64, "fp32", backward=False)
TEXT_ATTENTION_BACKWARD = masked_attention_group(256, 33, 2, 64, "fp32", backward=True)
DEPLOY_TEXT = "text deploy text_cct_2 raw text batch 64 CPU"  # "text": sentences/s
FUSED_FLOAT32 = "ONNX Runtime, cct_fast fused graph, float32"
FUSED_INT8 = "ONNX Runtime, cct_fast fused graph, int8"
OFFICIAL_INT8 = "ONNX Runtime, official torch.onnx export, int8 (quantize_dynamic)"
OFFICIAL_OPENVINO_INT8 = "OpenVINO, official torch.onnx export, int8 (static QDQ)"
FLOWERS_PIPELINE = "training cct_7_7x2_224_sine batch 32, Flowers-102 recipe (mixed_bfloat16)"


@dataclasses.dataclass(frozen=True)
class Target:
    description: str
    group: str
    row: str
    baseline_group: str
    baseline_row: str
    at_least: float


TARGETS = [
    Target(
        "fused fp32 inference >= 1.5x the reference (cct_7_3x1_32, batch 64)",
        INFERENCE_FP32,
        "fused",
        INFERENCE_FP32,
        "reference",
        1.5,
    ),
    Target(
        "fused bf16 inference >= 2x the reference fp32",
        INFERENCE_BF16,
        "fused",
        INFERENCE_FP32,
        "reference",
        2.0,
    ),
    Target(
        "fused fp32 train step >= 1.3x the reference",
        TRAIN_STEP,
        "fused",
        TRAIN_STEP,
        "reference",
        1.3,
    ),
    Target(
        "custom ops fp32 train step >= 1.5x the reference (official dropout defaults)",
        TRAIN_STEP,
        CUSTOM_ROW,
        TRAIN_STEP,
        "reference",
        1.5,
    ),
    Target(
        "custom ops mixed_bfloat16 train step >= 2.5x the reference fp32",
        TRAIN_STEP,
        f"{CUSTOM_ROW}, mixed_bfloat16",
        TRAIN_STEP,
        "reference",
        2.5,
    ),
    Target(
        'custom ops >= 1.3x the fused path, fp32 train step (what "auto" needs to take them)',
        TRAIN_STEP,
        CUSTOM_ROW,
        TRAIN_STEP,
        "fused",
        1.3,
    ),
    Target(
        "custom ops >= 1.3x the fused path, mixed_bfloat16 train step",
        TRAIN_STEP,
        f"{CUSTOM_ROW}, mixed_bfloat16",
        TRAIN_STEP,
        "fused, mixed_bfloat16",
        1.3,
    ),
    Target(
        "custom ops >= 1.3x the fused path, fp32 inference",
        INFERENCE_FP32,
        CUSTOM_ROW,
        INFERENCE_FP32,
        "fused",
        1.3,
    ),
    Target(
        "custom ops >= 1.3x the fused path, bf16 inference",
        INFERENCE_BF16,
        CUSTOM_ROW,
        INFERENCE_BF16,
        "fused",
        1.3,
    ),
    Target(
        "bf16 inference (custom ops, the fastest) >= 1.15x the official model under "
        "torch.compile in bf16",
        INFERENCE_BF16,
        CUSTOM_ROW,
        INFERENCE_BF16,
        "official PyTorch, torch.compile",
        1.15,
    ),
    Target(
        "cct_14_7x2_224 bf16 inference (custom ops) >= 1.15x the official model under "
        "torch.compile in bf16 (batch 8)",
        LARGEST_INFERENCE_BF16,
        CUSTOM_ROW,
        LARGEST_INFERENCE_BF16,
        "official PyTorch, torch.compile",
        1.15,
    ),
    Target(
        "bf16 inference (fused) beats the official PyTorch model in bf16",
        INFERENCE_BF16,
        "fused",
        INFERENCE_BF16,
        "official PyTorch",
        1.0,
    ),
    Target(
        "the input pipeline within 10 % of the bare train step",
        PIPELINE,
        "full augmentation pipeline (as `cct-fast train`)",
        PIPELINE,
        "bare train step (augmented batches in memory)",
        0.9,
    ),
    Target(
        "the Flowers-102 pipeline (224 px, JPEG files) within 10 % of the bare train step",
        FLOWERS_PIPELINE,
        "full augmentation pipeline (as `cct-fast train`)",
        FLOWERS_PIPELINE,
        "bare train step (augmented batches in memory)",
        0.9,
    ),
    Target(
        "custom masked attention >= 1.2x the fused path's (text_cct_2 layer, fp32 forward)",
        TEXT_ATTENTION,
        "custom op",
        TEXT_ATTENTION,
        "fused path",
        1.2,
    ),
    Target(
        "custom masked attention >= 1.2x the fused path's (fp32 forward + backward)",
        TEXT_ATTENTION_BACKWARD,
        "custom op",
        TEXT_ATTENTION_BACKWARD,
        "fused path",
        1.2,
    ),
    Target(
        "text_cct_2 fp32 train step: custom ops no slower than the reference under XLA "
        "(the fastest other path before them)",
        TEXT_TRAIN_STEP,
        CUSTOM_ROW,
        TEXT_TRAIN_STEP,
        "reference under XLA",
        1.0,
    ),
    Target(
        "int8 ONNX Runtime >= 1.5x float32, cct_fast fused graph",
        DEPLOY,
        FUSED_INT8,
        DEPLOY,
        FUSED_FLOAT32,
        1.5,
    ),
    Target(
        "cct_fast int8 >= 1.2x the official model's int8 in ONNX Runtime",
        DEPLOY,
        FUSED_INT8,
        DEPLOY,
        OFFICIAL_INT8,
        1.2,
    ),
    Target(
        "cct_fast int8 >= 1.2x the official model's int8 in OpenVINO",
        DEPLOY,
        FUSED_INT8,
        DEPLOY,
        OFFICIAL_OPENVINO_INT8,
        1.2,
    ),
]
