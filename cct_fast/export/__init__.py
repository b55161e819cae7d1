"""ONNX export through tf2onnx, checked in ONNX Runtime (:mod:`.onnx_export`), ONNX Runtime's
fused operators for an exported encoder (:mod:`.fusion`), the predictor that runs an export
(:mod:`.predictor`), and a TensorFlow SavedModel for TF Serving, raw text in
(:mod:`.saved_model`), and LiteRT (TFLite) for phones (:mod:`.litert`).

    from cct_fast.export import to_onnx, load_onnx, to_saved_model, to_tflite
"""

from cct_fast.errors import ExportError
from cct_fast.export.litert import to_tflite
from cct_fast.export.onnx_export import to_onnx
from cct_fast.export.predictor import OnnxPredictor, load_onnx
from cct_fast.export.saved_model import to_saved_model

__all__ = ["ExportError", "OnnxPredictor", "load_onnx", "to_onnx", "to_saved_model", "to_tflite"]
