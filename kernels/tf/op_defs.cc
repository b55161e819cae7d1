// The cct_fast ops as TensorFlow knows them: multi-head attention over a packed qkv tensor,
// sequence pooling and (residual +) LayerNorm, each with its gradient op, and their shape
// functions. Shapes are checked twice: here at graph construction, and on the tensors that arrive
// (op_kernels.h), so bad input is a TensorFlow error, never a crash.
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace tensorflow {
namespace {

using shape_inference::DimensionHandle;
using shape_inference::InferenceContext;
using shape_inference::ShapeHandle;

// qkv (batch, tokens, 3 * num_heads * head_dim): checks and returns (batch, tokens, width).
absl::Status AttentionInputShape(InferenceContext* c, ShapeHandle* qkv, DimensionHandle* width) {
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, qkv));
  int num_heads;
  TF_RETURN_IF_ERROR(c->GetAttr("num_heads", &num_heads));
  TF_RETURN_IF_ERROR(c->Divide(c->Dim(*qkv, 2), 3 * num_heads, /*evenly_divisible=*/true, width));
  return c->Multiply(*width, num_heads, width);
}

// seed: two int32 words, the Philox key of the attention dropout.
absl::Status SeedShape(InferenceContext* c, int index) {
  ShapeHandle seed;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(index), 1, &seed));
  DimensionHandle words;
  return c->WithValue(c->Dim(seed, 0), 2, &words);
}

// mask: (batch, tokens) boolean, or (0,): none.
absl::Status MaskShape(InferenceContext* c, int index) {
  ShapeHandle mask;
  return c->WithRankAtMost(c->input(index), 2, &mask);
}

REGISTER_OP("CctAttention")
    .Input("qkv: T")
    .Input("seed: int32")
    .Input("mask: bool")
    .Output("output: T")
    .Output("logsumexp: float")
    .Attr("T: {float, bfloat16, half}")
    .Attr("num_heads: int >= 1")
    .Attr("scale: float")
    .Attr("dropout_rate: float = 0.0")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle qkv;
      DimensionHandle width;
      TF_RETURN_IF_ERROR(AttentionInputShape(c, &qkv, &width));
      TF_RETURN_IF_ERROR(SeedShape(c, 1));
      TF_RETURN_IF_ERROR(MaskShape(c, 2));
      int num_heads;
      TF_RETURN_IF_ERROR(c->GetAttr("num_heads", &num_heads));
      c->set_output(0, c->MakeShape({c->Dim(qkv, 0), c->Dim(qkv, 1), width}));
      c->set_output(1, c->MakeShape({c->Dim(qkv, 0), num_heads, c->Dim(qkv, 1)}));
      return absl::OkStatus();
    })
    .Doc(R"doc(
softmax(scale * q k^T) v for every head, without materialising the score matrix.
qkv: (batch, tokens, 3 * num_heads * head_dim), laid out as (3, num_heads, head_dim).
seed: (2,) int32, the key of the dropout's Philox draws (ignored at dropout_rate 0).
mask: (batch, tokens), true where the token is real, or (0,) for none. A score that involves a
  padded token counts as the most negative value: real queries ignore padded keys, and a padded
  query attends uniformly to every token.
dropout_rate: drop each probability with this chance and scale the rest by 1 / (1 - rate).
output: (batch, tokens, num_heads * head_dim), heads merged.
logsumexp: (batch, num_heads, tokens) of the scaled scores, for the gradient.
)doc");

REGISTER_OP("CctAttentionGrad")
    .Input("qkv: T")
    .Input("output: T")
    .Input("logsumexp: float")
    .Input("grad_output: T")
    .Input("seed: int32")
    .Input("mask: bool")
    .Output("grad_qkv: T")
    .Attr("T: {float, bfloat16, half}")
    .Attr("num_heads: int >= 1")
    .Attr("scale: float")
    .Attr("dropout_rate: float = 0.0")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle qkv, out;
      DimensionHandle width;
      TF_RETURN_IF_ERROR(AttentionInputShape(c, &qkv, &width));
      TF_RETURN_IF_ERROR(SeedShape(c, 4));
      TF_RETURN_IF_ERROR(MaskShape(c, 5));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 3, &out));
      TF_RETURN_IF_ERROR(c->Merge(c->input(1), c->input(3), &out));
      c->set_output(0, qkv);
      return absl::OkStatus();
    });

REGISTER_OP("CctSequencePool")
    .Input("tokens: float")
    .Input("kernel: float")
    .Input("bias: float")
    .Output("output: float")
    .Output("weights: float")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle tokens, kernel, bias;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &tokens));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 1, &kernel));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 0, &bias));
      DimensionHandle dim;
      TF_RETURN_IF_ERROR(c->Merge(c->Dim(tokens, 2), c->Dim(kernel, 0), &dim));
      c->set_output(0, c->MakeShape({c->Dim(tokens, 0), dim}));
      c->set_output(1, c->MakeShape({c->Dim(tokens, 0), c->Dim(tokens, 1)}));
      return absl::OkStatus();
    })
    .Doc(R"doc(
Sequence pooling: softmax over tokens of tokens @ kernel + bias, then the weighted sum.
tokens: (batch, tokens, dim). kernel: (dim). bias: scalar.
output: (batch, dim). weights: (batch, tokens), the softmax.
)doc");

REGISTER_OP("CctSequencePoolGrad")
    .Input("tokens: float")
    .Input("kernel: float")
    .Input("weights: float")
    .Input("grad_output: float")
    .Output("grad_tokens: float")
    .Output("grad_kernel: float")
    .Output("grad_bias: float")
    .SetShapeFn([](InferenceContext* c) {
      c->set_output(0, c->input(0));
      c->set_output(1, c->input(1));
      c->set_output(2, c->Scalar());
      return absl::OkStatus();
    });

// x (..., width), the residual (0 or 1 of x's shape), gamma and beta (width): checks them and
// returns x's shape and the statistics' shape (x's without its last axis).
absl::Status LayerNormShapes(InferenceContext* c, bool gradient, ShapeHandle* x,
                             ShapeHandle* rows) {
  int residuals;
  TF_RETURN_IF_ERROR(c->GetAttr("N", &residuals));
  if (residuals > 1) {
    return errors::InvalidArgument("CctLayerNorm takes at most one residual, got ", residuals);
  }
  TF_RETURN_IF_ERROR(c->WithRankAtLeast(c->input(0), 1, x));
  if (residuals == 1) TF_RETURN_IF_ERROR(c->Merge(*x, c->input(1), x));
  DimensionHandle width = c->Dim(*x, -1);
  ShapeHandle vector;
  const int gamma = 1 + residuals, beta_or_mean = gamma + 1;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(gamma), 1, &vector));
  TF_RETURN_IF_ERROR(c->Merge(width, c->Dim(vector, 0), &width));
  TF_RETURN_IF_ERROR(c->Subshape(*x, 0, -1, rows));
  if (!gradient) {
    TF_RETURN_IF_ERROR(c->WithRank(c->input(beta_or_mean), 1, &vector));
    return c->Merge(width, c->Dim(vector, 0), &width);
  }
  for (int statistic : {beta_or_mean, beta_or_mean + 1})
    TF_RETURN_IF_ERROR(c->Merge(*rows, c->input(statistic), rows));
  return c->Merge(*x, c->input(beta_or_mean + 2), x);
}

// The outputs of a LayerNorm op's shape function: y of x's shape, mean and rstd of the rows'.
absl::Status LayerNormOutputs(InferenceContext* c, ShapeHandle x, ShapeHandle rows) {
  c->set_output(0, x);
  c->set_output(1, rows);
  c->set_output(2, rows);
  return absl::OkStatus();
}

REGISTER_OP("CctLayerNorm")
    .Input("x: T")
    .Input("residual: N * T")
    .Input("gamma: float")
    .Input("beta: float")
    .Output("y: T")
    .Output("mean: float")
    .Output("rstd: float")
    .Attr("T: {float, bfloat16, half}")
    .Attr("N: int >= 0")
    .Attr("epsilon: float")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle x, rows;
      TF_RETURN_IF_ERROR(LayerNormShapes(c, false, &x, &rows));
      return LayerNormOutputs(c, x, rows);
    })
    .Doc(R"doc(
LayerNorm over the last axis of x + residual (or of x alone), statistics in float32.
x: (..., width); residual: none, or one tensor of x's shape. gamma, beta: (width).
y: (x + residual - mean) * rstd * gamma + beta, in x's dtype.
mean, rstd: (...), float32: the row statistics, for the gradient.
)doc");

REGISTER_OP("CctLayerNormGrad")
    .Input("x: T")
    .Input("residual: N * T")
    .Input("gamma: float")
    .Input("mean: float")
    .Input("rstd: float")
    .Input("grad_y: T")
    .Output("grad_x: T")
    .Output("grad_gamma: float")
    .Output("grad_beta: float")
    .Attr("T: {float, bfloat16, half}")
    .Attr("N: int >= 0")
    .Attr("epsilon: float")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle x, rows;
      TF_RETURN_IF_ERROR(LayerNormShapes(c, true, &x, &rows));
      c->set_output(0, x);
      c->set_output(1, c->Vector(c->Dim(x, -1)));
      c->set_output(2, c->Vector(c->Dim(x, -1)));
      return absl::OkStatus();
    });

// x (..., width) and bias (width): x's shape, with its last axis merged with the bias's.
absl::Status BiasGeluShape(InferenceContext* c, ShapeHandle* x) {
  ShapeHandle bias;
  TF_RETURN_IF_ERROR(c->WithRankAtLeast(c->input(0), 1, x));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 1, &bias));
  DimensionHandle width;
  TF_RETURN_IF_ERROR(c->Merge(c->Dim(*x, -1), c->Dim(bias, 0), &width));
  return c->ReplaceDim(*x, -1, width, x);
}

REGISTER_OP("CctBiasGelu")
    .Input("x: T")
    .Input("bias: float")
    .Output("y: T")
    .Attr("T: {float, bfloat16}")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle x;
      TF_RETURN_IF_ERROR(BiasGeluShape(c, &x));
      c->set_output(0, x);
      return absl::OkStatus();
    })
    .Doc(R"doc(
Exact GELU of x + bias, computed in float32: y = s * Phi(s) with s = x + bias.
x: (..., width); bias: (width), float32. y: x's shape and dtype. CPU only.
)doc");

REGISTER_OP("CctBiasGeluGrad")
    .Input("x: T")
    .Input("bias: float")
    .Input("grad_y: T")
    .Output("grad_x: T")
    .Output("grad_bias: float")
    .Attr("T: {float, bfloat16}")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle x;
      TF_RETURN_IF_ERROR(BiasGeluShape(c, &x));
      TF_RETURN_IF_ERROR(c->Merge(x, c->input(2), &x));
      c->set_output(0, x);
      c->set_output(1, c->input(1));
      return absl::OkStatus();
    });

// branch (batch, ..., width) and scale (batch) at `branch`, `branch` + 1, and x of branch's shape
// at `x` (or none: -1): branch's shape, merged with x's and scale's.
absl::Status DropPathShape(InferenceContext* c, int branch, int x, ShapeHandle* shape) {
  TF_RETURN_IF_ERROR(c->WithRankAtLeast(c->input(branch), 2, shape));
  if (x >= 0) TF_RETURN_IF_ERROR(c->Merge(*shape, c->input(x), shape));
  ShapeHandle scale;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(branch + 1), 1, &scale));
  DimensionHandle batch;
  TF_RETURN_IF_ERROR(c->Merge(c->Dim(*shape, 0), c->Dim(scale, 0), &batch));
  return c->ReplaceDim(*shape, 0, batch, shape);
}

// The branch's bias (attr M: none or one, at `index`), checked against the width of `shape`.
absl::Status BranchBiasShape(InferenceContext* c, int index, ShapeHandle shape) {
  int biases;
  TF_RETURN_IF_ERROR(c->GetAttr("M", &biases));
  if (biases > 1) return errors::InvalidArgument("the branch takes at most one bias, got ", biases);
  if (biases == 0) return absl::OkStatus();
  ShapeHandle bias;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(index), 1, &bias));
  DimensionHandle width;
  return c->Merge(c->Dim(shape, -1), c->Dim(bias, 0), &width);
}

// x's shape, checked against the drop path's inputs (0 to 2), gamma's width (3) and the
// branch's bias (at bias_index); the rows.
absl::Status DropPathLayerNormShape(InferenceContext* c, int bias_index, ShapeHandle* x,
                                    ShapeHandle* rows) {
  TF_RETURN_IF_ERROR(DropPathShape(c, 1, 0, x));
  ShapeHandle gamma;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(3), 1, &gamma));
  DimensionHandle width;
  TF_RETURN_IF_ERROR(c->Merge(c->Dim(*x, -1), c->Dim(gamma, 0), &width));
  TF_RETURN_IF_ERROR(BranchBiasShape(c, bias_index, *x));
  return c->Subshape(*x, 0, -1, rows);
}

REGISTER_OP("CctDropPathLayerNorm")
    .Input("x: T")
    .Input("branch: T")
    .Input("scale: float")
    .Input("gamma: float")
    .Input("beta: float")
    .Input("bias: M * float")
    .Output("y: T")
    .Output("mean: float")
    .Output("rstd: float")
    .Attr("T: {float, bfloat16}")
    .Attr("M: int >= 0")
    .Attr("epsilon: float")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle x, rows, beta;
      TF_RETURN_IF_ERROR(DropPathLayerNormShape(c, 5, &x, &rows));
      TF_RETURN_IF_ERROR(c->Merge(c->input(3), c->input(4), &beta));
      return LayerNormOutputs(c, x, rows);
    })
    .Doc(R"doc(
LayerNorm over the last axis of x + scale[sample] * (branch + bias), statistics in float32: the
residual branch under drop path, then the norm, in one pass. CPU only.
x, branch: (batch, ..., width); scale: (batch), float32, each sample's factor (drop path's 0 or
1 / keep; ones without drop path). gamma, beta: (width). bias: none, or the (width) float32 bias
that the linear layer which made the branch left out. y: x's shape and dtype; mean, rstd:
(batch, ...), for the gradient.
)doc");

REGISTER_OP("CctDropPathLayerNormGrad")
    .Input("x: T")
    .Input("branch: T")
    .Input("scale: float")
    .Input("gamma: float")
    .Input("mean: float")
    .Input("rstd: float")
    .Input("grad_y: T")
    .Input("bias: M * float")
    .Output("grad_x: T")
    .Output("grad_branch: T")
    .Output("grad_gamma: float")
    .Output("grad_beta: float")
    .Output("grad_bias: M * float")
    .Attr("T: {float, bfloat16}")
    .Attr("M: int >= 0")
    .Attr("epsilon: float")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle x, rows;
      TF_RETURN_IF_ERROR(DropPathLayerNormShape(c, 7, &x, &rows));
      for (int statistic : {4, 5}) TF_RETURN_IF_ERROR(c->Merge(rows, c->input(statistic), &rows));
      TF_RETURN_IF_ERROR(c->Merge(x, c->input(6), &x));
      c->set_output(0, x);
      c->set_output(1, x);
      for (int output = 2; output < c->num_outputs(); ++output) c->set_output(output, c->input(3));
      return absl::OkStatus();
    });

// The branch comes first, so that T is known where x is an empty list.
REGISTER_OP("CctDropPathAdd")
    .Input("branch: T")
    .Input("scale: float")
    .Input("x: N * T")
    .Input("bias: M * float")
    .Output("y: T")
    .Attr("T: {float, bfloat16}")
    .Attr("N: int >= 0")
    .Attr("M: int >= 0")
    .SetShapeFn([](InferenceContext* c) {
      int n;
      TF_RETURN_IF_ERROR(c->GetAttr("N", &n));
      if (n > 1) return errors::InvalidArgument("CctDropPathAdd takes at most one x, got ", n);
      ShapeHandle y;
      TF_RETURN_IF_ERROR(DropPathShape(c, 0, n == 1 ? 2 : -1, &y));
      TF_RETURN_IF_ERROR(BranchBiasShape(c, 2 + n, y));
      c->set_output(0, y);
      return absl::OkStatus();
    })
    .Doc(R"doc(
x + scale[sample] * (branch + bias), the end of an encoder block with drop path on its branch,
or scale[sample] * branch without x and bias (the branch's gradient). CPU only.
branch, x (none or one): (batch, ..., width); scale: (batch), float32 (ones without drop path);
bias: none, or the branch's (width) float32 bias, as CctDropPathLayerNorm's. y: branch's shape
and dtype.
)doc");

REGISTER_OP("CctDropPathAddGrad")
    .Input("grad_y: T")
    .Input("scale: float")
    .Output("grad_branch: T")
    .Output("grad_bias: float")
    .Attr("T: {float, bfloat16}")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle grad_branch;
      TF_RETURN_IF_ERROR(DropPathShape(c, 0, -1, &grad_branch));
      c->set_output(0, grad_branch);
      c->set_output(1, c->Vector(c->Dim(grad_branch, -1)));
      return absl::OkStatus();
    })
    .Doc(R"doc(
The gradients of CctDropPathAdd's branch and bias: scale[sample] * grad_y, and its sum over
every axis but the last. CPU only.
)doc");

}  // namespace
}  // namespace tensorflow
