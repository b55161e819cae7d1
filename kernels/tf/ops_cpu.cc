// The CPU functors of the cct_fast ops: the C++ kernels of kernels/cpu on TensorFlow's intra-op
// threads. bfloat16 tensors reach the kernels as their raw 16-bit words.
#include <cstdint>

#include "kernels.h"
#include "op_kernels.h"
#include "tensorflow/core/framework/op_kernel.h"

namespace tensorflow {
namespace {

using CPUDevice = Eigen::ThreadPoolDevice;

void RunOnPool(void* pool, int64_t count, int64_t cost, cct_kernels::ParallelFor::Body body,
               const void* context) {
  static_cast<thread::ThreadPool*>(pool)->ParallelFor(
      count, cost, [body, context](int64_t begin, int64_t end) { body(context, begin, end); });
}

cct_kernels::ParallelFor CpuParallelFor(OpKernelContext* context) {
  return {RunOnPool, context->device()->tensorflow_cpu_worker_threads()->workers};
}

// The element type the kernels take for T: float, or the bits of a bfloat16.
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

}  // namespace

template <typename T>
struct AttentionFunctor<CPUDevice, T> {
  static absl::Status Forward(OpKernelContext* context, const Tensor& qkv, Tensor* out,
                              Tensor* logsumexp, const cct_kernels::AttentionShape& shape) {
    cct_kernels::AttentionForward(Raw<T>(qkv), Raw<T>(out), logsumexp->flat<float>().data(), shape,
                                  CpuParallelFor(context));
    return absl::OkStatus();
  }
  static absl::Status Backward(OpKernelContext* context, const Tensor& qkv, const Tensor& out,
                               const Tensor& logsumexp, const Tensor& grad_out, Tensor* grad_qkv,
                               const cct_kernels::AttentionShape& shape) {
    cct_kernels::AttentionBackward(Raw<T>(qkv), Raw<T>(out), logsumexp.flat<float>().data(),
                                   Raw<T>(grad_out), Raw<T>(grad_qkv), shape,
                                   CpuParallelFor(context));
    return absl::OkStatus();
  }
};

template <>
struct SequencePoolFunctor<CPUDevice> {
  static absl::Status Forward(OpKernelContext* context, const Tensor& tokens, const Tensor& kernel,
                              const Tensor& bias, Tensor* out, Tensor* weights,
                              const cct_kernels::PoolShape& shape) {
    cct_kernels::SequencePoolForward(tokens.flat<float>().data(), kernel.flat<float>().data(),
                                     bias.scalar<float>()(), out->flat<float>().data(),
                                     weights->flat<float>().data(), shape, CpuParallelFor(context));
    return absl::OkStatus();
  }
  static absl::Status Backward(OpKernelContext* context, const Tensor& tokens, const Tensor& kernel,
                               const Tensor& weights, const Tensor& grad_out, Tensor* grad_tokens,
                               Tensor* grad_kernel, Tensor* grad_bias,
                               const cct_kernels::PoolShape& shape) {
    cct_kernels::SequencePoolBackward(
        tokens.flat<float>().data(), kernel.flat<float>().data(), weights.flat<float>().data(),
        grad_out.flat<float>().data(), grad_tokens->flat<float>().data(),
        grad_kernel->flat<float>().data(), grad_bias->flat<float>().data(), shape,
        CpuParallelFor(context));
    return absl::OkStatus();
  }
};

template <typename T>
struct LayerNormFunctor<CPUDevice, T> {
  static absl::Status Forward(OpKernelContext* context, const LayerNormTensors& in, Tensor* y,
                              Tensor* mean, Tensor* rstd) {
    cct_kernels::LayerNormForward(Raw<T>(*in.x), in.residual ? Raw<T>(*in.residual) : nullptr,
                                  in.Floats(in.gamma), in.Floats(in.beta), Raw<T>(y),
                                  mean->flat<float>().data(), rstd->flat<float>().data(), in.shape,
                                  CpuParallelFor(context));
    return absl::OkStatus();
  }
  static absl::Status Backward(OpKernelContext* context, const LayerNormTensors& in, Tensor* grad_x,
                               Tensor* grad_gamma, Tensor* grad_beta) {
    cct_kernels::LayerNormBackward(
        Raw<T>(*in.x), in.residual ? Raw<T>(*in.residual) : nullptr, in.Floats(in.gamma),
        in.Floats(in.mean), in.Floats(in.rstd), Raw<T>(*in.grad_y), Raw<T>(grad_x),
        grad_gamma->flat<float>().data(), grad_beta->flat<float>().data(), in.shape,
        CpuParallelFor(context));
    return absl::OkStatus();
  }
};

namespace {
CCT_REGISTER_LAYER_NORM_KERNELS(DEVICE_CPU, CPUDevice, float);
CCT_REGISTER_LAYER_NORM_KERNELS(DEVICE_CPU, CPUDevice, bfloat16);

CCT_REGISTER_ATTENTION_KERNELS(DEVICE_CPU, CPUDevice, float);
CCT_REGISTER_ATTENTION_KERNELS(DEVICE_CPU, CPUDevice, bfloat16);
CCT_REGISTER_POOL_KERNELS(DEVICE_CPU, CPUDevice);
}  // namespace
}  // namespace tensorflow

// For cct_fast.compute.custom_ops: which instruction set the CPU kernels run with here.
extern "C" __attribute__((visibility("default"))) const char* CctKernelIsa() {
  return cct_kernels::KernelIsa();
}
extern "C" __attribute__((visibility("default"))) const char* CctKernelIsaError() {
  return cct_kernels::KernelIsaError();
}
