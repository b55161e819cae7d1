"""Fused ONNX Runtime operators for the encoder of an exported model.

tf2onnx spells each Keras layer as a chain of small ops (a LayerNorm is eleven of them, a Dense
on a 3-D input wraps its MatMul in Shape/Gather/Concat/Reshape), and the fusions of
``onnxruntime.transformers`` only recognise the patterns of PyTorch exports, so they find
nothing in it. The layers of the exported model are known here, so each one is replaced
whole:

- its nodes are the ones under the name scope that tf2onnx keeps from TensorFlow;
- the new operator takes its weights from the Keras layer itself, not from whatever constant
  folding left in the graph (folding drops, for instance, a bias that happens to be zero);
- a scope that does not have exactly one input and one output is left as it is.

Then ``onnxruntime.transformers`` does the fusions it knows on top of these operators: the
residual Add joins the LayerNormalization (SkipLayerNormalization), the Dense bias joins the
Gelu (BiasGelu).
"""

from __future__ import annotations

import functools
import re

import numpy as np

from cct_fast.compute.reference import GELU_SCOPE

MICROSOFT = "com.microsoft"


def fuse_encoder(proto, model, quantizable=False):
    """Return ``proto`` with the encoder of ``model`` (the Keras model it was exported from)
    as ``LayerNormalization``, ``Attention``, ``Gelu`` and ``MatMul`` nodes, and the names of
    the layers that could not be replaced.

    With ``quantizable``, each attention is its q, k and v ``MatMul`` and
    ``MultiHeadAttention`` instead of one ``Attention``: static quantization (QDQ) quantizes
    MatMuls, and ``Attention`` holds its qkv GEMM inside, where the quantizer cannot reach it.
    In float32 the one operator is the faster (measured in ``benchmarks/test_deploy.py``)."""
    from onnx import helper
    from onnxruntime.transformers.onnx_model import OnnxModel

    graph = _Graph(proto)
    attention = _split_attention if quantizable else _attention
    for block in model.blocks:
        graph.replace(block.pre_norm.path, _layer_norm(block.pre_norm))
        graph.replace(block.self_attn.path, attention(block.self_attn))
        graph.replace(block.norm1.path, _layer_norm(block.norm1))
        graph.replace(block.linear1.path, _dense(block.linear1))
        graph.replace(f"{block.path}/{GELU_SCOPE}", _gelu)
        graph.replace(block.linear2.path, _dense(block.linear2))
    graph.replace(model.norm.path, _layer_norm(model.norm))
    if not any(opset.domain == MICROSOFT for opset in proto.opset_import):
        proto.opset_import.append(helper.make_opsetid(MICROSOFT, 1))
    cleaned = OnnxModel(proto)
    cleaned.prune_graph()
    cleaned.topological_sort()
    return cleaned.model, graph.skipped


def apply_transformer_fusions(proto, model):
    """The fusions of ``onnxruntime.transformers`` (SkipLayerNormalization, BiasGelu) over a
    graph that :func:`fuse_encoder` rewrote. Python fusions only (``opt_level=0``): higher
    levels import torch and write hardware-specific graphs."""
    from onnxruntime.transformers.optimizer import optimize_model

    config = model.config
    optimized = optimize_model(
        proto,
        model_type="bert_tf",
        num_heads=config.num_heads,
        hidden_size=config.embedding_dim,
        opt_level=0,
    )
    optimized.topological_sort()
    return complete_shapes(optimized.model)


def complete_shapes(proto):
    """``proto`` with the type and shape of every tensor recorded. ONNX's own inference stops
    at operators of the ``com.microsoft`` domain, so the tensors after them would have no type,
    and ONNX Runtime's quantizer refuses a graph with untyped tensors ("Unable to find data
    type for weight_name"); its symbolic inference knows those operators."""
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    return SymbolicShapeInference.infer_shapes(proto, auto_merge=True)


class _Graph:
    """The nodes of an ONNX graph, replaced one name scope at a time."""

    def __init__(self, proto):
        self.graph = proto.graph
        self.initializers = {tensor.name for tensor in proto.graph.initializer}
        self.skipped = []

    def replace(self, keras_path, build):
        """Replace the nodes under ``keras_path`` by those ``build(graph, x, y, prefix)``
        returns, where ``x`` is the scope's one input and ``y`` its one output."""
        pattern = re.compile(
            "/".join(re.escape(part) + r"(?:_\d+)?" for part in keras_path.split("/")) + "/"
        )
        nodes = self.graph.node
        inside = [i for i, node in enumerate(nodes) if pattern.match(node.name)]
        inputs, outputs = self._boundary(inside)
        if len(inputs) != 1 or len(outputs) != 1:
            self.skipped.append(keras_path)
            return
        replacement = build(self, inputs[0], outputs[0], keras_path)
        first = inside[0]
        for i in reversed(inside):
            del nodes[i]
        for offset, node in enumerate(replacement):
            nodes.insert(first + offset, node)

    def _boundary(self, inside):
        """The tensors the nodes at indices ``inside`` take from, and give to, the rest."""
        nodes = self.graph.node
        scope = [nodes[i] for i in inside]
        produced = {name for node in scope for name in node.output}
        inputs = []
        for node in scope:
            for name in node.input:
                if (
                    name
                    and name not in produced
                    and name not in self.initializers
                    and name not in inputs
                ):
                    inputs.append(name)
        members = set(inside)  # by index: protobuf may wrap one node in several objects
        used_outside = {
            name for i, node in enumerate(nodes) if i not in members for name in node.input
        }
        used_outside |= {output.name for output in self.graph.output}
        outputs = [name for node in scope for name in node.output if name in used_outside]
        return inputs, outputs

    def constant(self, name, array):
        from onnx import numpy_helper

        self.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        self.initializers.add(name)
        return name


def _numpy(variable, dtype):
    return np.asarray(variable.numpy(), dtype=dtype)


def _layer_norm(layer):
    """LayerNormalization in the layer's compute dtype. Under mixed_float16, Keras takes float16
    in, normalises in float32 and returns float16; ONNX Runtime's float16 kernels also
    accumulate in float32, so only gamma and beta are rounded to float16 here, and the
    residual Add before the norm can still fuse with it (SkipLayerNormalization)."""

    def build(graph, x, y, prefix):
        from onnx import helper

        dtype = layer.compute_dtype
        gamma = graph.constant(f"{prefix}/gamma", _numpy(layer.gamma, dtype))
        beta = graph.constant(f"{prefix}/beta", _numpy(layer.beta, dtype))
        return [
            helper.make_node(
                "LayerNormalization",
                [x, gamma, beta],
                [y],
                axis=-1,
                epsilon=float(layer.epsilon),
                name=prefix,
            )
        ]

    return build


def _dense(layer):
    return functools.partial(_matmul_add, layer=layer)


def _matmul_add(graph, x, y, prefix, layer):
    """MatMul (which broadcasts over the batch and token axes) and the bias Add."""
    from onnx import helper

    dtype = layer.compute_dtype
    kernel = graph.constant(f"{prefix}/kernel", _numpy(layer.kernel, dtype))
    if not layer.use_bias:
        return [helper.make_node("MatMul", [x, kernel], [y], name=prefix)]
    bias = graph.constant(f"{prefix}/bias", _numpy(layer.bias, dtype))
    product = f"{prefix}/product"
    return [
        helper.make_node("MatMul", [x, kernel], [product], name=prefix),
        helper.make_node("Add", [product, bias], [y], name=f"{prefix}/bias_add"),
    ]


def _attention(layer):
    """ONNX Runtime's ``Attention`` over the packed qkv kernel, whose output columns are
    (q | k | v), each heads x head_dim, as that operator expects; its default scale is
    head_dim**-0.5, as the official model's. Then the output projection."""

    def build(graph, x, y, prefix):
        from onnx import helper

        dtype = layer.compute_dtype
        weights = graph.constant(f"{prefix}/qkv_kernel", _numpy(layer.qkv.kernel, dtype))
        bias = graph.constant(
            f"{prefix}/qkv_bias", np.zeros(layer.qkv.kernel.shape[-1], dtype=dtype)
        )
        heads = f"{prefix}/heads"
        attention = helper.make_node(
            "Attention",
            [x, weights, bias],
            [heads],
            domain=MICROSOFT,
            num_heads=layer.num_heads,
            name=prefix,
        )
        return [attention, *_matmul_add(graph, heads, y, f"{prefix}/proj", layer.proj)]

    return build


def _split_attention(layer):
    """The qkv projection as three MatMuls (q, k and v, each heads x head_dim columns of the
    packed kernel), then ONNX Runtime's ``MultiHeadAttention`` (scale head_dim**-0.5 by
    default) and the output projection. Three GEMMs rather than one and a ``Split``: the split
    copied the whole qkv tensor (4 % of the int8 graph's time), and the CPU provider does not
    take ``MultiHeadAttention``'s packed (batch, tokens, heads, 3, head_dim) input."""

    def build(graph, x, y, prefix):
        from onnx import helper

        kernel = _numpy(layer.qkv.kernel, layer.compute_dtype)
        width = kernel.shape[-1] // 3
        nodes, parts = [], []
        for index, part in enumerate("qkv"):
            weights = graph.constant(
                f"{prefix}/{part}_kernel", kernel[:, index * width : (index + 1) * width]
            )
            parts.append(f"{prefix}/{part}")
            nodes.append(helper.make_node("MatMul", [x, weights], [parts[-1]], name=parts[-1]))
        heads = f"{prefix}/heads"
        return [
            *nodes,
            helper.make_node(
                "MultiHeadAttention",
                parts,
                [heads],
                domain=MICROSOFT,
                num_heads=layer.num_heads,
                name=prefix,
            ),
            *_matmul_add(graph, heads, y, f"{prefix}/proj", layer.proj),
        ]

    return build


def _gelu(graph, x, y, prefix):
    from onnx import helper

    return [helper.make_node("Gelu", [x], [y], domain=MICROSOFT, name=prefix)]
