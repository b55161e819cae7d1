// The GPU functors of the cct_fast ops (float32): the CUDA kernels of kernels/cuda. Compiled
// only when CMake finds a CUDA compiler. It includes no CUDA header: the launchers take
// TensorFlow's stream as the void* handle StreamExecutor exposes, so the wheel's CUDA 12.5
// headers and the local toolkit's never meet in one translation unit.
#include "launchers.h"
#include "op_kernels.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "xla/stream_executor/stream.h"

namespace tensorflow {
namespace {

struct GPUDevice {};  // the tag of this file's functors; the kernels need no Eigen device

void* Stream(OpKernelContext* context) {
  return context->op_device_context()->stream()->platform_specific_handle().stream;
}

// The CUDA attention has no key-padding mask yet; cct_fast.compute.dispatch sends masked calls
// on a GPU to the fused path.
absl::Status Unmasked(const cct_kernels::AttentionShape& s) {
  if (s.mask == nullptr) return absl::OkStatus();
  return errors::Unimplemented(
      "the CUDA attention kernel has no key-padding mask: run a masked attention on the CPU or "
      "the fused path");
}

absl::Status Launched(int code) {
  if (code == 0) return absl::OkStatus();
  if (code == CCT_CUDA_UNSUPPORTED) return errors::InvalidArgument(cct_cuda_error_string(code));
  return errors::Internal("cct_fast CUDA kernel: ", cct_cuda_error_string(code));
}

}  // namespace

template <>
struct AttentionFunctor<GPUDevice, float> {
  static absl::Status Forward(OpKernelContext* context, const Tensor& qkv, Tensor* out,
                              Tensor* logsumexp, const cct_kernels::AttentionShape& s) {
    TF_RETURN_IF_ERROR(Unmasked(s));
    return Launched(cct_cuda_attention_forward(qkv.flat<float>().data(), out->flat<float>().data(),
                                               logsumexp->flat<float>().data(), s.batch, s.tokens,
                                               s.heads, s.head_dim, s.scale, s.keep, s.seed0,
                                               s.seed1, Stream(context)));
  }
  static absl::Status Backward(OpKernelContext* context, const Tensor& qkv, const Tensor& out,
                               const Tensor& logsumexp, const Tensor& grad_out, Tensor* grad_qkv,
                               const cct_kernels::AttentionShape& s) {
    TF_RETURN_IF_ERROR(Unmasked(s));
    Tensor delta;
    TF_RETURN_IF_ERROR(context->allocate_temp(DT_FLOAT, logsumexp.shape(), &delta));
    return Launched(cct_cuda_attention_backward(
        qkv.flat<float>().data(), out.flat<float>().data(), logsumexp.flat<float>().data(),
        grad_out.flat<float>().data(), grad_qkv->flat<float>().data(), delta.flat<float>().data(),
        s.batch, s.tokens, s.heads, s.head_dim, s.scale, s.keep, s.seed0, s.seed1,
        Stream(context)));
  }
};

template <>
struct SequencePoolFunctor<GPUDevice> {
  static absl::Status Forward(OpKernelContext* context, const Tensor& tokens, const Tensor& kernel,
                              const Tensor& bias, Tensor* out, Tensor* weights,
                              const cct_kernels::PoolShape& s) {
    return Launched(cct_cuda_sequence_pool_forward(
        tokens.flat<float>().data(), kernel.flat<float>().data(), bias.flat<float>().data(),
        out->flat<float>().data(), weights->flat<float>().data(), s.batch, s.tokens, s.dim,
        Stream(context)));
  }
  static absl::Status Backward(OpKernelContext* context, const Tensor& tokens, const Tensor& kernel,
                               const Tensor& weights, const Tensor& grad_out, Tensor* grad_tokens,
                               Tensor* grad_kernel, Tensor* grad_bias,
                               const cct_kernels::PoolShape& s) {
    Tensor score_grads;
    TF_RETURN_IF_ERROR(context->allocate_temp(DT_FLOAT, weights.shape(), &score_grads));
    return Launched(cct_cuda_sequence_pool_backward(
        tokens.flat<float>().data(), kernel.flat<float>().data(), weights.flat<float>().data(),
        grad_out.flat<float>().data(), grad_tokens->flat<float>().data(),
        grad_kernel->flat<float>().data(), grad_bias->flat<float>().data(),
        score_grads.flat<float>().data(), s.batch, s.tokens, s.dim, Stream(context)));
  }
};

namespace {
CCT_REGISTER_ATTENTION_KERNELS(DEVICE_GPU, GPUDevice, float);
CCT_REGISTER_POOL_KERNELS(DEVICE_GPU, GPUDevice);
}  // namespace
}  // namespace tensorflow

// For cct_fast.compute.custom_ops: this build has CUDA kernels.
extern "C" __attribute__((visibility("default"))) int CctKernelHasCuda() { return 1; }
