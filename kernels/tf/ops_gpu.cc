// GPU kernels of the cct_fast ops (float32): the TensorFlow side of kernels/cuda. Compiled only
// when CMake finds a CUDA compiler. It includes no CUDA header: the launchers take TensorFlow's
// stream as the void* handle StreamExecutor exposes, so the wheel's CUDA 12.5 headers and the
// local toolkit's never meet in one translation unit.
#include "launchers.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "xla/stream_executor/stream.h"

namespace tensorflow {
namespace {

void* Stream(OpKernelContext* context) {
  return context->op_device_context()->stream()->platform_specific_handle().stream;
}

absl::Status Launched(int code) {
  if (code == 0) return absl::OkStatus();
  if (code == CCT_CUDA_UNSUPPORTED) return errors::InvalidArgument(cct_cuda_error_string(code));
  return errors::Internal("cct_fast CUDA kernel: ", cct_cuda_error_string(code));
}

absl::Status AttentionShape(const Tensor& qkv, int num_heads, int64_t* head_dim) {
  if (qkv.dims() != 3 || qkv.dim_size(1) == 0 || qkv.dim_size(2) == 0 ||
      qkv.dim_size(2) % (3 * num_heads) != 0) {
    return errors::InvalidArgument(
        "qkv must be (batch, tokens >= 1, 3 * num_heads * head_dim) with num_heads = ", num_heads,
        ", got shape ", qkv.shape().DebugString());
  }
  *head_dim = qkv.dim_size(2) / (3 * num_heads);
  return absl::OkStatus();
}

class FusedAttentionGpuOp : public OpKernel {
 public:
  explicit FusedAttentionGpuOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("num_heads", &num_heads_));
    OP_REQUIRES_OK(context, context->GetAttr("scale", &scale_));
  }

  void Compute(OpKernelContext* context) override {
    const Tensor& qkv = context->input(0);
    int64_t head_dim;
    OP_REQUIRES_OK(context, AttentionShape(qkv, num_heads_, &head_dim));
    const int64_t batch = qkv.dim_size(0), tokens = qkv.dim_size(1);
    Tensor *out = nullptr, *lse = nullptr;
    OP_REQUIRES_OK(context,
                   context->allocate_output(0, {batch, tokens, num_heads_ * head_dim}, &out));
    OP_REQUIRES_OK(context, context->allocate_output(1, {batch, num_heads_, tokens}, &lse));
    OP_REQUIRES_OK(context, Launched(cct_cuda_attention_forward(
                                qkv.flat<float>().data(), out->flat<float>().data(),
                                lse->flat<float>().data(), batch, tokens, num_heads_, head_dim,
                                scale_, Stream(context))));
  }

 private:
  int num_heads_;
  float scale_;
};

class FusedAttentionGradGpuOp : public OpKernel {
 public:
  explicit FusedAttentionGradGpuOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("num_heads", &num_heads_));
    OP_REQUIRES_OK(context, context->GetAttr("scale", &scale_));
  }

  void Compute(OpKernelContext* context) override {
    const Tensor& qkv = context->input(0);
    const Tensor& out = context->input(1);
    const Tensor& lse = context->input(2);
    const Tensor& grad_out = context->input(3);
    int64_t head_dim;
    OP_REQUIRES_OK(context, AttentionShape(qkv, num_heads_, &head_dim));
    const int64_t batch = qkv.dim_size(0), tokens = qkv.dim_size(1);
    const TensorShape out_shape({batch, tokens, num_heads_ * head_dim});
    OP_REQUIRES(context,
                out.shape() == out_shape && grad_out.shape() == out_shape &&
                    lse.shape() == TensorShape({batch, num_heads_, tokens}),
                errors::InvalidArgument("output, logsumexp and grad_output do not match qkv ",
                                        qkv.shape().DebugString()));
    Tensor* grad_qkv = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, qkv.shape(), &grad_qkv));
    Tensor delta;
    OP_REQUIRES_OK(context, context->allocate_temp(DT_FLOAT, lse.shape(), &delta));
    OP_REQUIRES_OK(context, Launched(cct_cuda_attention_backward(
                                qkv.flat<float>().data(), out.flat<float>().data(),
                                lse.flat<float>().data(), grad_out.flat<float>().data(),
                                grad_qkv->flat<float>().data(), delta.flat<float>().data(), batch,
                                tokens, num_heads_, head_dim, scale_, Stream(context))));
  }

 private:
  int num_heads_;
  float scale_;
};

absl::Status PoolShape(const Tensor& tokens, const Tensor& kernel) {
  if (tokens.dims() != 3 || tokens.dim_size(1) == 0 || kernel.dims() != 1 ||
      kernel.dim_size(0) != tokens.dim_size(2)) {
    return errors::InvalidArgument("tokens must be (batch, tokens >= 1, dim) and kernel (dim,), "
                                   "got ",
                                   tokens.shape().DebugString(), " and ",
                                   kernel.shape().DebugString());
  }
  return absl::OkStatus();
}

class SequencePoolGpuOp : public OpKernel {
 public:
  using OpKernel::OpKernel;

  void Compute(OpKernelContext* context) override {
    const Tensor& tokens = context->input(0);
    const Tensor& kernel = context->input(1);
    const Tensor& bias = context->input(2);
    OP_REQUIRES_OK(context, PoolShape(tokens, kernel));
    OP_REQUIRES(context, TensorShapeUtils::IsScalar(bias.shape()),
                errors::InvalidArgument("bias must be a scalar, got shape ",
                                        bias.shape().DebugString()));
    const int64_t batch = tokens.dim_size(0), count = tokens.dim_size(1), dim = tokens.dim_size(2);
    Tensor *out = nullptr, *weights = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, {batch, dim}, &out));
    OP_REQUIRES_OK(context, context->allocate_output(1, {batch, count}, &weights));
    OP_REQUIRES_OK(context, Launched(cct_cuda_sequence_pool_forward(
                                tokens.flat<float>().data(), kernel.flat<float>().data(),
                                bias.flat<float>().data(), out->flat<float>().data(),
                                weights->flat<float>().data(), batch, count, dim,
                                Stream(context))));
  }
};

class SequencePoolGradGpuOp : public OpKernel {
 public:
  using OpKernel::OpKernel;

  void Compute(OpKernelContext* context) override {
    const Tensor& tokens = context->input(0);
    const Tensor& kernel = context->input(1);
    const Tensor& weights = context->input(2);
    const Tensor& grad_out = context->input(3);
    OP_REQUIRES_OK(context, PoolShape(tokens, kernel));
    const int64_t batch = tokens.dim_size(0), count = tokens.dim_size(1), dim = tokens.dim_size(2);
    OP_REQUIRES(context,
                weights.shape() == TensorShape({batch, count}) &&
                    grad_out.shape() == TensorShape({batch, dim}),
                errors::InvalidArgument("weights and grad_output must be (batch, tokens) and "
                                        "(batch, dim), got ",
                                        weights.shape().DebugString(), " and ",
                                        grad_out.shape().DebugString()));
    Tensor *grad_tokens = nullptr, *grad_kernel = nullptr, *grad_bias = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, tokens.shape(), &grad_tokens));
    OP_REQUIRES_OK(context, context->allocate_output(1, kernel.shape(), &grad_kernel));
    OP_REQUIRES_OK(context, context->allocate_output(2, TensorShape({}), &grad_bias));
    Tensor score_grads;
    OP_REQUIRES_OK(context, context->allocate_temp(DT_FLOAT, weights.shape(), &score_grads));
    OP_REQUIRES_OK(context, Launched(cct_cuda_sequence_pool_backward(
                                tokens.flat<float>().data(), kernel.flat<float>().data(),
                                weights.flat<float>().data(), grad_out.flat<float>().data(),
                                grad_tokens->flat<float>().data(),
                                grad_kernel->flat<float>().data(), grad_bias->flat<float>().data(),
                                score_grads.flat<float>().data(), batch, count, dim,
                                Stream(context))));
  }
};

REGISTER_KERNEL_BUILDER(
    Name("CctFusedAttention").Device(DEVICE_GPU).TypeConstraint<float>("T"),
    FusedAttentionGpuOp);
REGISTER_KERNEL_BUILDER(
    Name("CctFusedAttentionGrad").Device(DEVICE_GPU).TypeConstraint<float>("T"),
    FusedAttentionGradGpuOp);
REGISTER_KERNEL_BUILDER(Name("CctSequencePool").Device(DEVICE_GPU), SequencePoolGpuOp);
REGISTER_KERNEL_BUILDER(Name("CctSequencePoolGrad").Device(DEVICE_GPU), SequencePoolGradGpuOp);

}  // namespace
}  // namespace tensorflow

// For cct_fast.kernels: this build has CUDA kernels.
extern "C" __attribute__((visibility("default"))) int CctKernelHasCuda() { return 1; }
