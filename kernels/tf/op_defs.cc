// TensorFlow ops of cct_fast: fused attention over a packed qkv tensor and sequence pooling,
// each with its gradient op, and their CPU kernels. Shapes are checked twice: at graph
// construction (shape functions) and on the tensors that arrive (checks.h), so bad input is a
// TensorFlow error, never a crash.
#include <cstdint>
#include <functional>

#include "kernels.h"
#include "op_inputs.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/util/work_sharder.h"

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

REGISTER_OP("CctFusedAttention")
    .Input("qkv: T")
    .Output("output: T")
    .Output("logsumexp: float")
    .Attr("T: {float, bfloat16}")
    .Attr("num_heads: int >= 1")
    .Attr("scale: float")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle qkv;
      DimensionHandle width;
      TF_RETURN_IF_ERROR(AttentionInputShape(c, &qkv, &width));
      int num_heads;
      TF_RETURN_IF_ERROR(c->GetAttr("num_heads", &num_heads));
      c->set_output(0, c->MakeShape({c->Dim(qkv, 0), c->Dim(qkv, 1), width}));
      c->set_output(1, c->MakeShape({c->Dim(qkv, 0), num_heads, c->Dim(qkv, 1)}));
      return absl::OkStatus();
    })
    .Doc(R"doc(
softmax(scale * q k^T) v for every head, without materialising the score matrix.
qkv: (batch, tokens, 3 * num_heads * head_dim), laid out as (3, num_heads, head_dim).
output: (batch, tokens, num_heads * head_dim), heads merged.
logsumexp: (batch, num_heads, tokens) of the scaled scores, for the gradient.
)doc");

REGISTER_OP("CctFusedAttentionGrad")
    .Input("qkv: T")
    .Input("output: T")
    .Input("logsumexp: float")
    .Input("grad_output: T")
    .Output("grad_qkv: T")
    .Attr("T: {float, bfloat16}")
    .Attr("num_heads: int >= 1")
    .Attr("scale: float")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle qkv, out;
      DimensionHandle width;
      TF_RETURN_IF_ERROR(AttentionInputShape(c, &qkv, &width));
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

cct_kernels::ParallelFor CpuParallelFor(OpKernelContext* context) {
  thread::ThreadPool* pool = context->device()->tensorflow_cpu_worker_threads()->workers;
  return [pool](int64_t count, int64_t cost, const std::function<void(int64_t, int64_t)>& body) {
    pool->ParallelFor(count, cost, body);
  };
}

template <typename T>
struct Bits {
  using type = float;
};
template <>
struct Bits<bfloat16> {
  using type = uint16_t;
};
template <typename T>
const typename Bits<T>::type* Raw(const Tensor& t) {
  return reinterpret_cast<const typename Bits<T>::type*>(t.flat<T>().data());
}
template <typename T>
typename Bits<T>::type* Raw(Tensor* t) {
  return reinterpret_cast<typename Bits<T>::type*>(t->flat<T>().data());
}

template <typename T>
class FusedAttentionOp : public AttentionKernel {
 public:
  using AttentionKernel::AttentionKernel;

  void Compute(OpKernelContext* context) override {
    const Tensor& qkv = context->input(0);
    cct_kernels::AttentionShape shape;
    OP_REQUIRES_OK(context, CheckInputs(context, &shape));
    Tensor *out = nullptr, *lse = nullptr;
    OP_REQUIRES_OK(context,
                   context->allocate_output(
                       0, {shape.batch, shape.tokens, shape.heads * shape.head_dim}, &out));
    OP_REQUIRES_OK(context,
                   context->allocate_output(1, {shape.batch, shape.heads, shape.tokens}, &lse));
    if (shape.batch == 0) return;
    cct_kernels::AttentionForward(Raw<T>(qkv), Raw<T>(out), lse->flat<float>().data(), shape,
                                  CpuParallelFor(context));
  }
};

template <typename T>
class FusedAttentionGradOp : public AttentionKernel {
 public:
  using AttentionKernel::AttentionKernel;

  void Compute(OpKernelContext* context) override {
    const Tensor& qkv = context->input(0);
    const Tensor& out = context->input(1);
    const Tensor& lse = context->input(2);
    const Tensor& grad_out = context->input(3);
    cct_kernels::AttentionShape shape;
    OP_REQUIRES_OK(context, CheckInputs(context, &shape));
    Tensor* grad_qkv = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, qkv.shape(), &grad_qkv));
    if (shape.batch == 0) return;
    cct_kernels::AttentionBackward(Raw<T>(qkv), Raw<T>(out), lse.flat<float>().data(),
                                   Raw<T>(grad_out), Raw<T>(grad_qkv), shape,
                                   CpuParallelFor(context));
  }
};

class SequencePoolOp : public OpKernel {
 public:
  using OpKernel::OpKernel;

  void Compute(OpKernelContext* context) override {
    const Tensor& tokens = context->input(0);
    const Tensor& kernel = context->input(1);
    const Tensor& bias = context->input(2);
    cct_kernels::PoolShape shape;
    OP_REQUIRES_OK(context, cct_checks::PoolInput(tokens, kernel, &shape));
    OP_REQUIRES_OK(context, cct_checks::PoolBias(bias));
    Tensor *out = nullptr, *weights = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, {shape.batch, shape.dim}, &out));
    OP_REQUIRES_OK(context, context->allocate_output(1, {shape.batch, shape.tokens}, &weights));
    if (shape.batch == 0) return;
    cct_kernels::SequencePoolForward(tokens.flat<float>().data(), kernel.flat<float>().data(),
                                     bias.scalar<float>()(), out->flat<float>().data(),
                                     weights->flat<float>().data(), shape, CpuParallelFor(context));
  }
};

class SequencePoolGradOp : public OpKernel {
 public:
  using OpKernel::OpKernel;

  void Compute(OpKernelContext* context) override {
    const Tensor& tokens = context->input(0);
    const Tensor& kernel = context->input(1);
    const Tensor& weights = context->input(2);
    const Tensor& grad_out = context->input(3);
    cct_kernels::PoolShape shape;
    OP_REQUIRES_OK(context, cct_checks::PoolInput(tokens, kernel, &shape));
    OP_REQUIRES_OK(context, cct_checks::PoolGradInputs(weights, grad_out, shape));
    Tensor *grad_tokens = nullptr, *grad_kernel = nullptr, *grad_bias = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, tokens.shape(), &grad_tokens));
    OP_REQUIRES_OK(context, context->allocate_output(1, kernel.shape(), &grad_kernel));
    OP_REQUIRES_OK(context, context->allocate_output(2, TensorShape({}), &grad_bias));
    cct_kernels::SequencePoolBackward(
        tokens.flat<float>().data(), kernel.flat<float>().data(), weights.flat<float>().data(),
        grad_out.flat<float>().data(), grad_tokens->flat<float>().data(),
        grad_kernel->flat<float>().data(), grad_bias->flat<float>().data(), shape,
        CpuParallelFor(context));
  }
};

REGISTER_KERNEL_BUILDER(Name("CctFusedAttention").Device(DEVICE_CPU).TypeConstraint<float>("T"),
                        FusedAttentionOp<float>);
REGISTER_KERNEL_BUILDER(Name("CctFusedAttention").Device(DEVICE_CPU).TypeConstraint<bfloat16>("T"),
                        FusedAttentionOp<bfloat16>);
REGISTER_KERNEL_BUILDER(Name("CctFusedAttentionGrad").Device(DEVICE_CPU).TypeConstraint<float>("T"),
                        FusedAttentionGradOp<float>);
REGISTER_KERNEL_BUILDER(
    Name("CctFusedAttentionGrad").Device(DEVICE_CPU).TypeConstraint<bfloat16>("T"),
    FusedAttentionGradOp<bfloat16>);
REGISTER_KERNEL_BUILDER(Name("CctSequencePool").Device(DEVICE_CPU), SequencePoolOp);
REGISTER_KERNEL_BUILDER(Name("CctSequencePoolGrad").Device(DEVICE_CPU), SequencePoolGradOp);

}  // namespace
}  // namespace tensorflow

// For cct_fast.kernels: which instruction set the CPU kernels run with here.
extern "C" __attribute__((visibility("default"))) const char* CctKernelIsa() {
  return cct_kernels::KernelIsa();
}
