// What the cct_fast ops take, shared by the CPU (ops.cc) and GPU (ops_gpu.cc) kernels: the
// attention ops' attributes, and checks of the tensors that arrive (the shape functions' checks
// again, on real tensors), so bad input is a TensorFlow error, never a crash.
#pragma once

#include "kernels.h"
#include "tensorflow/core/framework/op_kernel.h"

namespace tensorflow {
namespace cct_checks {

inline absl::Status AttentionInput(const Tensor& qkv, int num_heads, float scale,
                                   cct_kernels::AttentionShape* shape) {
  if (qkv.dims() != 3) {
    return errors::InvalidArgument(
        "qkv must be (batch, tokens, 3 * num_heads * head_dim), got shape ",
        qkv.shape().DebugString());
  }
  const int64_t width = qkv.dim_size(2);
  if (width == 0 || width % (3 * num_heads) != 0) {
    return errors::InvalidArgument(
        "qkv's last dimension (", width,
        ") must be a positive multiple of 3 * num_heads = ", 3 * num_heads);
  }
  if (qkv.dim_size(1) == 0) {
    return errors::InvalidArgument("qkv must hold at least one token, got shape ",
                                   qkv.shape().DebugString());
  }
  *shape = {qkv.dim_size(0), qkv.dim_size(1), num_heads, width / (3 * num_heads), scale};
  return absl::OkStatus();
}

// output and grad_output (batch, tokens, width) and logsumexp (batch, heads, tokens).
inline absl::Status AttentionGradInputs(const Tensor& out, const Tensor& lse,
                                        const Tensor& grad_out,
                                        const cct_kernels::AttentionShape& s) {
  const TensorShape out_shape({s.batch, s.tokens, s.heads * s.head_dim});
  if (out.shape() != out_shape || grad_out.shape() != out_shape) {
    return errors::InvalidArgument("output and grad_output must be ", out_shape.DebugString(),
                                   ", got ", out.shape().DebugString(), " and ",
                                   grad_out.shape().DebugString());
  }
  const TensorShape lse_shape({s.batch, s.heads, s.tokens});
  if (lse.shape() != lse_shape) {
    return errors::InvalidArgument("logsumexp must be ", lse_shape.DebugString(), ", got ",
                                   lse.shape().DebugString());
  }
  return absl::OkStatus();
}

inline absl::Status PoolInput(const Tensor& tokens, const Tensor& kernel,
                              cct_kernels::PoolShape* shape) {
  if (tokens.dims() != 3 || tokens.dim_size(1) == 0) {
    return errors::InvalidArgument("tokens must be (batch, tokens >= 1, dim), got shape ",
                                   tokens.shape().DebugString());
  }
  if (kernel.dims() != 1 || kernel.dim_size(0) != tokens.dim_size(2)) {
    return errors::InvalidArgument("kernel must be (", tokens.dim_size(2), ",), got shape ",
                                   kernel.shape().DebugString());
  }
  *shape = {tokens.dim_size(0), tokens.dim_size(1), tokens.dim_size(2)};
  return absl::OkStatus();
}

inline absl::Status PoolBias(const Tensor& bias) {
  if (TensorShapeUtils::IsScalar(bias.shape())) return absl::OkStatus();
  return errors::InvalidArgument("bias must be a scalar, got shape ", bias.shape().DebugString());
}

// weights (batch, tokens) and grad_output (batch, dim).
inline absl::Status PoolGradInputs(const Tensor& weights, const Tensor& grad_out,
                                   const cct_kernels::PoolShape& s) {
  if (weights.shape() == TensorShape({s.batch, s.tokens}) &&
      grad_out.shape() == TensorShape({s.batch, s.dim})) {
    return absl::OkStatus();
  }
  return errors::InvalidArgument(
      "weights and grad_output must be (batch, tokens) and (batch, dim), got ",
      weights.shape().DebugString(), " and ", grad_out.shape().DebugString());
}

}  // namespace cct_checks

// Base of the attention kernels: reads num_heads and scale, and checks qkv (and, for the
// gradient, output, logsumexp and grad_output).
class AttentionKernel : public OpKernel {
 public:
  explicit AttentionKernel(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("num_heads", &num_heads_));
    OP_REQUIRES_OK(context, context->GetAttr("scale", &scale_));
  }

 protected:
  absl::Status CheckInputs(OpKernelContext* context, cct_kernels::AttentionShape* shape) const {
    TF_RETURN_IF_ERROR(cct_checks::AttentionInput(context->input(0), num_heads_, scale_, shape));
    if (context->num_inputs() == 1) return absl::OkStatus();
    return cct_checks::AttentionGradInputs(context->input(1), context->input(2), context->input(3),
                                           *shape);
  }

 private:
  int num_heads_;
  float scale_;
};

}  // namespace tensorflow
