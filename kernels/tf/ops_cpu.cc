// The CPU functors of the cct_fast ops: the C++ kernels of kernels/cpu on TensorFlow's intra-op
// threads. bfloat16 tensors reach the kernels as their raw 16-bit words.
#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "kernels.h"
#include "op_kernels.h"
#include "tensorflow/core/framework/op_kernel.h"

namespace tensorflow {
namespace {

using CPUDevice = Eigen::ThreadPoolDevice;

cct_kernels::ParallelFor CpuParallelFor(OpKernelContext* context) {
  thread::ThreadPool* pool = context->device()->tensorflow_cpu_worker_threads()->workers;
  return [pool](int64_t count, int64_t cost, const std::function<void(int64_t, int64_t)>& body) {
    pool->ParallelFor(count, cost, body);
  };
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

namespace {

// The tensors of a LayerNorm op, checked: x, its residual (or none), gamma (and beta, or the
// saved statistics and grad_y of the gradient).
absl::Status LayerNormInputs(OpKernelContext* context, bool gradient, float epsilon,
                             cct_kernels::LayerNormShape* shape) {
  const Tensor& x = context->input(0);
  if (x.dims() < 1 || x.dim_size(x.dims() - 1) == 0) {
    return errors::InvalidArgument("x must be (..., width >= 1), got shape ",
                                   x.shape().DebugString());
  }
  const int residuals = context->num_inputs() - (gradient ? 5 : 3);
  if (residuals > 1) {
    return errors::InvalidArgument("CctLayerNorm takes at most one residual, got ", residuals);
  }
  if (residuals == 1 && context->input(1).shape() != x.shape()) {
    return errors::InvalidArgument("residual must have x's shape ", x.shape().DebugString(),
                                   ", got ", context->input(1).shape().DebugString());
  }
  const int64_t width = x.dim_size(x.dims() - 1);
  TensorShape rows = x.shape();
  rows.RemoveLastDims(1);
  const int gamma = 1 + residuals;
  std::vector<std::pair<int, TensorShape>> expected = {{gamma, TensorShape({width})}};
  if (gradient) {
    expected.push_back({gamma + 1, rows});
    expected.push_back({gamma + 2, rows});
    expected.push_back({gamma + 3, x.shape()});
  } else {
    expected.push_back({gamma + 1, TensorShape({width})});
  }
  for (const auto& [index, shape_there] : expected) {
    if (context->input(index).shape() != shape_there) {
      return errors::InvalidArgument("input ", index, " of ", context->op_kernel().type_string(),
                                     " must be ", shape_there.DebugString(), ", got ",
                                     context->input(index).shape().DebugString());
    }
  }
  *shape = {rows.num_elements(), width, epsilon};
  return absl::OkStatus();
}

template <typename T>
const typename Bits<T>::type* Residual(OpKernelContext* context, bool gradient) {
  const bool has_residual = context->num_inputs() == (gradient ? 6 : 4);
  return has_residual ? Raw<T>(context->input(1)) : nullptr;
}

// Base of the LayerNorm kernels: reads epsilon.
class LayerNormKernel : public OpKernel {
 public:
  explicit LayerNormKernel(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("epsilon", &epsilon_));
  }

 protected:
  float epsilon_;
};

template <typename T>
class LayerNormOp : public LayerNormKernel {
 public:
  using LayerNormKernel::LayerNormKernel;

  void Compute(OpKernelContext* context) override {
    cct_kernels::LayerNormShape s;
    OP_REQUIRES_OK(context, LayerNormInputs(context, false, epsilon_, &s));
    const Tensor& x = context->input(0);
    TensorShape rows = x.shape();
    rows.RemoveLastDims(1);
    Tensor *y = nullptr, *mean = nullptr, *rstd = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, x.shape(), &y));
    OP_REQUIRES_OK(context, context->allocate_output(1, rows, &mean));
    OP_REQUIRES_OK(context, context->allocate_output(2, rows, &rstd));
    if (s.rows == 0) return;
    const int gamma = context->num_inputs() - 2;
    cct_kernels::LayerNormForward(
        Raw<T>(x), Residual<T>(context, false), context->input(gamma).flat<float>().data(),
        context->input(gamma + 1).flat<float>().data(), Raw<T>(y), mean->flat<float>().data(),
        rstd->flat<float>().data(), s, CpuParallelFor(context));
  }
};

// Runs on zero rows too: the gamma and beta gradients are then zeros.
template <typename T>
class LayerNormGradOp : public LayerNormKernel {
 public:
  using LayerNormKernel::LayerNormKernel;

  void Compute(OpKernelContext* context) override {
    cct_kernels::LayerNormShape s;
    OP_REQUIRES_OK(context, LayerNormInputs(context, true, epsilon_, &s));
    const Tensor& x = context->input(0);
    Tensor *grad_x = nullptr, *grad_gamma = nullptr, *grad_beta = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, x.shape(), &grad_x));
    OP_REQUIRES_OK(context, context->allocate_output(1, {s.width}, &grad_gamma));
    OP_REQUIRES_OK(context, context->allocate_output(2, {s.width}, &grad_beta));
    const int gamma = context->num_inputs() - 4;
    cct_kernels::LayerNormBackward(
        Raw<T>(x), Residual<T>(context, true), context->input(gamma).flat<float>().data(),
        context->input(gamma + 1).flat<float>().data(),
        context->input(gamma + 2).flat<float>().data(), Raw<T>(context->input(gamma + 3)),
        Raw<T>(grad_x), grad_gamma->flat<float>().data(), grad_beta->flat<float>().data(), s,
        CpuParallelFor(context));
  }
};

#define CCT_REGISTER_LAYER_NORM_KERNELS(T)                                                    \
  REGISTER_KERNEL_BUILDER(Name("CctLayerNorm").Device(DEVICE_CPU).TypeConstraint<T>("T"),     \
                          LayerNormOp<T>);                                                    \
  REGISTER_KERNEL_BUILDER(Name("CctLayerNormGrad").Device(DEVICE_CPU).TypeConstraint<T>("T"), \
                          LayerNormGradOp<T>)
CCT_REGISTER_LAYER_NORM_KERNELS(float);
CCT_REGISTER_LAYER_NORM_KERNELS(bfloat16);
#undef CCT_REGISTER_LAYER_NORM_KERNELS

CCT_REGISTER_ATTENTION_KERNELS(DEVICE_CPU, CPUDevice, float);
CCT_REGISTER_ATTENTION_KERNELS(DEVICE_CPU, CPUDevice, bfloat16);
CCT_REGISTER_POOL_KERNELS(DEVICE_CPU, CPUDevice);
}  // namespace
}  // namespace tensorflow

// For cct_fast.compute.custom_ops: which instruction set the CPU kernels run with here.
extern "C" __attribute__((visibility("default"))) const char* CctKernelIsa() {
  return cct_kernels::KernelIsa();
}
