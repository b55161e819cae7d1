"""ONNX export through tf2onnx, checked in ONNX Runtime (:mod:`.onnx_export`), ONNX Runtime's
fused operators for an exported encoder (:mod:`.fusion`), and the predictor that runs an export
(:mod:`.predictor`).

    from cct_fast.export import to_onnx, load_onnx
"""

from cct_fast.errors import ExportError
from cct_fast.export.onnx_export import to_onnx
from cct_fast.export.predictor import OnnxPredictor, load_onnx

__all__ = ["ExportError", "OnnxPredictor", "load_onnx", "to_onnx"]
