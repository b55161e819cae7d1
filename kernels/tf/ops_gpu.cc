// The GPU functors of the cct_fast ops: the CUDA kernels of kernels/cuda. Compiled only when
// CMake finds a CUDA compiler. It includes no CUDA header: the launchers take TensorFlow's
// stream as the void* handle StreamExecutor exposes and 16-bit tensors as raw bits, so the
// wheel's CUDA 12.5 headers and the local toolkit's never meet in one translation unit.
// float32 attention runs on the exact CUDA-core kernel, bfloat16 and float16 on tensor cores
// (sm_80 and newer).
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

absl::Status Launched(int code) {
  if (code == 0) return absl::OkStatus();
  if (code == CCT_CUDA_UNSUPPORTED || code == CCT_CUDA_MISALIGNED || code == CCT_CUDA_NEEDS_SM80) {
    return errors::InvalidArgument(cct_cuda_error_string(code));
  }
  return errors::Internal("cct_fast CUDA kernel: ", cct_cuda_error_string(code));
}

// The launchers' dtype code of T, and its tensors' data as the launchers take it.
template <typename T>
constexpr int kDtype = CCT_CUDA_FLOAT32;
template <>
constexpr int kDtype<bfloat16> = CCT_CUDA_BFLOAT16;
template <>
constexpr int kDtype<Eigen::half> = CCT_CUDA_FLOAT16;

template <typename T>
const void* Data(const Tensor& t) {
  return t.flat<T>().data();
}
template <typename T>
void* Data(Tensor* t) {
  return t->flat<T>().data();
}
float* Floats(Tensor* t) { return t->flat<float>().data(); }
const float* Floats(const Tensor& t) { return t.flat<float>().data(); }

}  // namespace

template <>
struct AttentionFunctor<GPUDevice, float> {
  static absl::Status Forward(OpKernelContext* context, const Tensor& qkv, Tensor* out,
                              Tensor* logsumexp, const cct_kernels::AttentionShape& s) {
    return Launched(cct_cuda_attention_forward(Floats(qkv), s.mask, Floats(out), Floats(logsumexp),
                                               s.batch, s.tokens, s.heads, s.head_dim, s.scale,
                                               s.keep, s.seed0, s.seed1, Stream(context)));
  }
  static absl::Status Backward(OpKernelContext* context, const Tensor& qkv, const Tensor& out,
                               const Tensor& logsumexp, const Tensor& grad_out, Tensor* grad_qkv,
                               const cct_kernels::AttentionShape& s) {
    Tensor delta;
    TF_RETURN_IF_ERROR(context->allocate_temp(DT_FLOAT, logsumexp.shape(), &delta));
    return Launched(cct_cuda_attention_backward(Floats(qkv), s.mask, Floats(out), Floats(logsumexp),
                                                Floats(grad_out), Floats(grad_qkv), Floats(&delta),
                                                s.batch, s.tokens, s.heads, s.head_dim, s.scale,
                                                s.keep, s.seed0, s.seed1, Stream(context)));
  }
};

template <typename T>
struct SixteenBitAttention {
  static absl::Status Forward(OpKernelContext* context, const Tensor& qkv, Tensor* out,
                              Tensor* logsumexp, const cct_kernels::AttentionShape& s) {
    return Launched(cct_cuda_attention_forward_16bit(
        kDtype<T>, Data<T>(qkv), s.mask, Data<T>(out), Floats(logsumexp), s.batch, s.tokens,
        s.heads, s.head_dim, s.scale, s.keep, s.seed0, s.seed1, Stream(context)));
  }
  static absl::Status Backward(OpKernelContext* context, const Tensor& qkv, const Tensor& out,
                               const Tensor& logsumexp, const Tensor& grad_out, Tensor* grad_qkv,
                               const cct_kernels::AttentionShape& s) {
    Tensor delta;
    TF_RETURN_IF_ERROR(context->allocate_temp(DT_FLOAT, logsumexp.shape(), &delta));
    return Launched(cct_cuda_attention_backward_16bit(
        kDtype<T>, Data<T>(qkv), s.mask, Data<T>(out), Floats(logsumexp), Data<T>(grad_out),
        Data<T>(grad_qkv), Floats(&delta), s.batch, s.tokens, s.heads, s.head_dim, s.scale, s.keep,
        s.seed0, s.seed1, Stream(context)));
  }
};
template <>
struct AttentionFunctor<GPUDevice, bfloat16> : SixteenBitAttention<bfloat16> {};
template <>
struct AttentionFunctor<GPUDevice, Eigen::half> : SixteenBitAttention<Eigen::half> {};

template <>
struct SequencePoolFunctor<GPUDevice> {
  static absl::Status Forward(OpKernelContext* context, const Tensor& tokens, const Tensor& kernel,
                              const Tensor& bias, Tensor* out, Tensor* weights,
                              const cct_kernels::PoolShape& s) {
    return Launched(cct_cuda_sequence_pool_forward(CCT_CUDA_FLOAT32, Floats(tokens), Floats(kernel),
                                                   Floats(bias), Floats(out), Floats(weights),
                                                   s.batch, s.tokens, s.dim, Stream(context)));
  }
  static absl::Status Backward(OpKernelContext* context, const Tensor& tokens, const Tensor& kernel,
                               const Tensor& weights, const Tensor& grad_out, Tensor* grad_tokens,
                               Tensor* grad_kernel, Tensor* grad_bias,
                               const cct_kernels::PoolShape& s) {
    Tensor score_grads;
    TF_RETURN_IF_ERROR(context->allocate_temp(DT_FLOAT, weights.shape(), &score_grads));
    return Launched(cct_cuda_sequence_pool_backward(
        CCT_CUDA_FLOAT32, Floats(tokens), Floats(kernel), Floats(weights), Floats(grad_out),
        Floats(grad_tokens), Floats(grad_kernel), Floats(grad_bias), Floats(&score_grads), s.batch,
        s.tokens, s.dim, Stream(context)));
  }
};

template <typename T>
struct LayerNormFunctor<GPUDevice, T> {
  static absl::Status Forward(OpKernelContext* context, const LayerNormTensors& in, Tensor* y,
                              Tensor* mean, Tensor* rstd) {
    return Launched(cct_cuda_layer_norm_forward(
        kDtype<T>, Data<T>(*in.x), in.residual ? Data<T>(*in.residual) : nullptr,
        in.Floats(in.gamma), in.Floats(in.beta), Data<T>(y), Floats(mean), Floats(rstd),
        in.shape.rows, in.shape.width, in.shape.epsilon, Stream(context)));
  }
  static absl::Status Backward(OpKernelContext* context, const LayerNormTensors& in, Tensor* grad_x,
                               Tensor* grad_gamma, Tensor* grad_beta) {
    Tensor partials;
    TF_RETURN_IF_ERROR(context->allocate_temp(
        DT_FLOAT, {cct_cuda_layer_norm_partials(in.shape.rows, in.shape.width)}, &partials));
    return Launched(cct_cuda_layer_norm_backward(
        kDtype<T>, Data<T>(*in.x), in.residual ? Data<T>(*in.residual) : nullptr,
        in.Floats(in.gamma), in.Floats(in.mean), in.Floats(in.rstd), Data<T>(*in.grad_y),
        Data<T>(grad_x), Floats(grad_gamma), Floats(grad_beta), Floats(&partials), in.shape.rows,
        in.shape.width, Stream(context)));
  }
};

namespace {
CCT_REGISTER_ATTENTION_KERNELS(DEVICE_GPU, GPUDevice, float);
CCT_REGISTER_ATTENTION_KERNELS(DEVICE_GPU, GPUDevice, bfloat16);
CCT_REGISTER_ATTENTION_KERNELS(DEVICE_GPU, GPUDevice, Eigen::half);
CCT_REGISTER_POOL_KERNELS(DEVICE_GPU, GPUDevice);
CCT_REGISTER_LAYER_NORM_KERNELS(DEVICE_GPU, GPUDevice, float);
CCT_REGISTER_LAYER_NORM_KERNELS(DEVICE_GPU, GPUDevice, bfloat16);
CCT_REGISTER_LAYER_NORM_KERNELS(DEVICE_GPU, GPUDevice, Eigen::half);
}  // namespace
}  // namespace tensorflow

// For cct_fast.compute.custom_ops: this build has CUDA kernels.
extern "C" __attribute__((visibility("default"))) int CctKernelHasCuda() { return 1; }
