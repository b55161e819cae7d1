// GPU kernels of the cct_fast ops (float32): the TensorFlow side of kernels/cuda. Compiled only
// when CMake finds a CUDA compiler. It includes no CUDA header: the launchers take TensorFlow's
// stream as the void* handle StreamExecutor exposes, so the wheel's CUDA 12.5 headers and the
// local toolkit's never meet in one translation unit.
#include "launchers.h"
#include "op_inputs.h"
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

class FusedAttentionGpuOp : public AttentionKernel {
 public:
  using AttentionKernel::AttentionKernel;

  void Compute(OpKernelContext* context) override {
    const Tensor& qkv = context->input(0);
    cct_kernels::AttentionShape s;
    OP_REQUIRES_OK(context, CheckInputs(context, &s));
    Tensor *out = nullptr, *lse = nullptr;
    OP_REQUIRES_OK(context,
                   context->allocate_output(0, {s.batch, s.tokens, s.heads * s.head_dim}, &out));
    OP_REQUIRES_OK(context, context->allocate_output(1, {s.batch, s.heads, s.tokens}, &lse));
    OP_REQUIRES_OK(
        context, Launched(cct_cuda_attention_forward(
                     qkv.flat<float>().data(), out->flat<float>().data(), lse->flat<float>().data(),
                     s.batch, s.tokens, s.heads, s.head_dim, s.scale, Stream(context))));
  }
};

class FusedAttentionGradGpuOp : public AttentionKernel {
 public:
  using AttentionKernel::AttentionKernel;

  void Compute(OpKernelContext* context) override {
    const Tensor& qkv = context->input(0);
    const Tensor& out = context->input(1);
    const Tensor& lse = context->input(2);
    const Tensor& grad_out = context->input(3);
    cct_kernels::AttentionShape s;
    OP_REQUIRES_OK(context, CheckInputs(context, &s));
    Tensor* grad_qkv = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, qkv.shape(), &grad_qkv));
    Tensor delta;
    OP_REQUIRES_OK(context, context->allocate_temp(DT_FLOAT, lse.shape(), &delta));
    OP_REQUIRES_OK(context, Launched(cct_cuda_attention_backward(
                                qkv.flat<float>().data(), out.flat<float>().data(),
                                lse.flat<float>().data(), grad_out.flat<float>().data(),
                                grad_qkv->flat<float>().data(), delta.flat<float>().data(), s.batch,
                                s.tokens, s.heads, s.head_dim, s.scale, Stream(context))));
  }
};

class SequencePoolGpuOp : public OpKernel {
 public:
  using OpKernel::OpKernel;

  void Compute(OpKernelContext* context) override {
    const Tensor& tokens = context->input(0);
    const Tensor& kernel = context->input(1);
    const Tensor& bias = context->input(2);
    cct_kernels::PoolShape s;
    OP_REQUIRES_OK(context, cct_checks::PoolInput(tokens, kernel, &s));
    OP_REQUIRES_OK(context, cct_checks::PoolBias(bias));
    Tensor *out = nullptr, *weights = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, {s.batch, s.dim}, &out));
    OP_REQUIRES_OK(context, context->allocate_output(1, {s.batch, s.tokens}, &weights));
    OP_REQUIRES_OK(context,
                   Launched(cct_cuda_sequence_pool_forward(
                       tokens.flat<float>().data(), kernel.flat<float>().data(),
                       bias.flat<float>().data(), out->flat<float>().data(),
                       weights->flat<float>().data(), s.batch, s.tokens, s.dim, Stream(context))));
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
    cct_kernels::PoolShape s;
    OP_REQUIRES_OK(context, cct_checks::PoolInput(tokens, kernel, &s));
    OP_REQUIRES_OK(context, cct_checks::PoolGradInputs(weights, grad_out, s));
    Tensor *grad_tokens = nullptr, *grad_kernel = nullptr, *grad_bias = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, tokens.shape(), &grad_tokens));
    OP_REQUIRES_OK(context, context->allocate_output(1, kernel.shape(), &grad_kernel));
    OP_REQUIRES_OK(context, context->allocate_output(2, TensorShape({}), &grad_bias));
    Tensor score_grads;
    OP_REQUIRES_OK(context, context->allocate_temp(DT_FLOAT, weights.shape(), &score_grads));
    OP_REQUIRES_OK(
        context,
        Launched(cct_cuda_sequence_pool_backward(
            tokens.flat<float>().data(), kernel.flat<float>().data(), weights.flat<float>().data(),
            grad_out.flat<float>().data(), grad_tokens->flat<float>().data(),
            grad_kernel->flat<float>().data(), grad_bias->flat<float>().data(),
            score_grads.flat<float>().data(), s.batch, s.tokens, s.dim, Stream(context))));
  }
};

REGISTER_KERNEL_BUILDER(Name("CctFusedAttention").Device(DEVICE_GPU).TypeConstraint<float>("T"),
                        FusedAttentionGpuOp);
REGISTER_KERNEL_BUILDER(Name("CctFusedAttentionGrad").Device(DEVICE_GPU).TypeConstraint<float>("T"),
                        FusedAttentionGradGpuOp);
REGISTER_KERNEL_BUILDER(Name("CctSequencePool").Device(DEVICE_GPU), SequencePoolGpuOp);
REGISTER_KERNEL_BUILDER(Name("CctSequencePoolGrad").Device(DEVICE_GPU), SequencePoolGradGpuOp);

}  // namespace
}  // namespace tensorflow

// For cct_fast.kernels: this build has CUDA kernels.
extern "C" __attribute__((visibility("default"))) int CctKernelHasCuda() { return 1; }
