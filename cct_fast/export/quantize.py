"""int8 ONNX: static quantization of a float32 export by ONNX Runtime's quantization tool,
accepted only when its accuracy on labelled examples stays within a stated drop of the Keras
model's.

The scheme is the one ONNX Runtime recommends for x86 CPUs: QDQ nodes, weights int8 per output
channel, activations uint8 per tensor with ranges calibrated (min/max) on a few hundred of the
model's own inputs. Only the GEMMs are quantized (``MatMul``, ``Conv``, ``Gemm``): LayerNorm,
softmax, GELU and the pooling stay in float32, and so do the attention's two batched products
of activations (queries x keys, probabilities x values) and the sequence pooling's, whose
operands have no fixed range to calibrate (:func:`activation_products`).
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path

import numpy as np

from cct_fast.errors import ExportError
from cct_fast.export.examples import batches

QUANTIZED_OPS = ("MatMul", "Conv", "Gemm")
DEFAULT_MAX_DROP = 0.01  # top-1 accuracy, as a fraction: one point
CALIBRATION_BATCH = 32
CALIBRATION_EXAMPLES = 256  # what `cct-fast export RUN --int8` draws from a run's training split


@dataclasses.dataclass(frozen=True)
class Int8Check:
    """Top-1 accuracy of the Keras model and of its int8 export on the same labelled
    examples."""

    keras_accuracy: float
    int8_accuracy: float
    examples: int
    max_drop: float

    @property
    def drop(self):
        return self.keras_accuracy - self.int8_accuracy

    def to_json(self):
        return json.dumps(dataclasses.asdict(self))

    def __str__(self):
        return (
            f"top-1 {100 * self.int8_accuracy:.2f} % in int8 against "
            f"{100 * self.keras_accuracy:.2f} % in Keras on {self.examples} examples "
            f"(drop {100 * self.drop:+.2f} points; at most {100 * self.max_drop:.2f} allowed)"
        )


def quantize_static(proto, calibration: dict[str, np.ndarray]):
    """``proto`` (a float32 graph) with its GEMMs in int8, their activations' ranges
    calibrated on ``calibration`` (input name -> array, batch first).

    The graph first goes through the tool's own preparation (``quant_pre_process``: symbolic
    shape inference, which types the tensors after ONNX Runtime's fused operators, and
    constant folding). Weights are quantized to 7 bits (``reduce_range``): on x86 CPUs without
    VNNI (AVX2, and AVX-512 before Cascade Lake) the uint8 x int8 products are summed in pairs
    into saturating 16-bit integers, and with 8-bit weights the tokenizer's convolution
    overflowed there, costing digits 1.4 points (``benchmarks/RESULTS.md``, ``deploy``)."""
    import onnx
    from onnxruntime import quantization
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="cct_fast-int8-") as work:
        source, prepared, output = (Path(work) / f"{n}.onnx" for n in ("float", "ready", "int8"))
        onnx.save(proto, source)  # the tool writes into a proto it is given: give it a file
        quant_pre_process(source, prepared, auto_merge=True)
        quantization.quantize_static(
            prepared,
            output,
            _Batches(calibration),
            quant_format=quantization.QuantFormat.QDQ,
            per_channel=True,
            reduce_range=True,
            activation_type=quantization.QuantType.QUInt8,
            weight_type=quantization.QuantType.QInt8,
            op_types_to_quantize=list(QUANTIZED_OPS),
            nodes_to_exclude=activation_products(onnx.load(prepared)),
            calibrate_method=quantization.CalibrationMethod.MinMax,
            # A GEMM's output goes on in float (to LayerNorm, GELU, attention): ONNX Runtime
            # then runs it as MatMulIntegerToFloat, with no QuantizeLinear/DequantizeLinear
            # pair after it (1.15x on the fused graph, and closer to float).
            extra_options={"OpTypesToExcludeOutputQuantization": list(QUANTIZED_OPS)},
        )
        return onnx.load(output)


def activation_products(proto) -> list[str]:
    """The MatMul nodes of ``proto`` neither of whose operands is a weight."""
    weights = {tensor.name for tensor in proto.graph.initializer}
    weights |= {
        output for node in proto.graph.node if node.op_type == "Constant" for output in node.output
    }
    return [
        node.name
        for node in proto.graph.node
        if node.op_type == "MatMul" and not any(name in weights for name in node.input)
    ]


def check_accuracy(keras_logits, int8_logits, labels, max_drop) -> Int8Check:
    """Compare the top-1 accuracy of an int8 graph's logits with the Keras model's on
    ``labels``; raise :class:`ExportError` when the int8 graph loses more than ``max_drop``."""
    check = Int8Check(
        keras_accuracy=float((keras_logits.argmax(1) == labels).mean()),
        int8_accuracy=float((int8_logits.argmax(1) == labels).mean()),
        examples=len(labels),
        max_drop=max_drop,
    )
    if check.drop > max_drop:
        raise ExportError(
            f"The int8 graph loses too much accuracy, so nothing was written: {check}."
        )
    return check


class _Batches:
    """ONNX Runtime's calibration data reader over arrays held in memory."""

    def __init__(self, inputs):
        self._batches = iter(batches(inputs, CALIBRATION_BATCH))

    def get_next(self):
        return next(self._batches, None)
