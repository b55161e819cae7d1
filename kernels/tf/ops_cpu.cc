// The CPU functors of the cct_fast ops: the C++ kernels of kernels/cpu on TensorFlow's intra-op
// threads. bfloat16 tensors reach the kernels as their raw 16-bit words.
#include <cstdint>
#include <utility>
#include <vector>

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

namespace {

// The inputs of a LayerNorm op, checked: x, its residual (or none), gamma, and beta (forward)
// or the saved statistics and grad_y (gradient).
struct LayerNormInputs {
  cct_kernels::LayerNormShape shape;
  TensorShape rows;  // x's shape without its last axis: the statistics'
  bool has_residual;
  int gamma;  // the index of gamma; the tensors after it follow in the op's order

  template <typename T>
  const typename Bits<T>::type* Residual(OpKernelContext* context) const {
    return has_residual ? Raw<T>(context->input(1)) : nullptr;
  }
  const float* Floats(OpKernelContext* context, int after_gamma) const {
    return context->input(gamma + after_gamma).flat<float>().data();
  }
};

absl::Status CheckLayerNormInputs(OpKernelContext* context, bool gradient, float epsilon,
                                  LayerNormInputs* inputs) {
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
  *inputs = {{rows.num_elements(), width, epsilon}, rows, residuals == 1, gamma};
  return absl::OkStatus();
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
    LayerNormInputs in;
    OP_REQUIRES_OK(context, CheckLayerNormInputs(context, false, epsilon_, &in));
    const Tensor& x = context->input(0);
    Tensor *y = nullptr, *mean = nullptr, *rstd = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, x.shape(), &y));
    OP_REQUIRES_OK(context, context->allocate_output(1, in.rows, &mean));
    OP_REQUIRES_OK(context, context->allocate_output(2, in.rows, &rstd));
    if (in.shape.rows == 0) return;
    cct_kernels::LayerNormForward(Raw<T>(x), in.Residual<T>(context), in.Floats(context, 0),
                                  in.Floats(context, 1), Raw<T>(y), mean->flat<float>().data(),
                                  rstd->flat<float>().data(), in.shape, CpuParallelFor(context));
  }
};

// Runs on zero rows too: the gamma and beta gradients are then zeros.
template <typename T>
class LayerNormGradOp : public LayerNormKernel {
 public:
  using LayerNormKernel::LayerNormKernel;

  void Compute(OpKernelContext* context) override {
    LayerNormInputs in;
    OP_REQUIRES_OK(context, CheckLayerNormInputs(context, true, epsilon_, &in));
    const Tensor& x = context->input(0);
    Tensor *grad_x = nullptr, *grad_gamma = nullptr, *grad_beta = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, x.shape(), &grad_x));
    OP_REQUIRES_OK(context, context->allocate_output(1, {in.shape.width}, &grad_gamma));
    OP_REQUIRES_OK(context, context->allocate_output(2, {in.shape.width}, &grad_beta));
    cct_kernels::LayerNormBackward(
        Raw<T>(x), in.Residual<T>(context), in.Floats(context, 0), in.Floats(context, 1),
        in.Floats(context, 2), Raw<T>(context->input(in.gamma + 3)), Raw<T>(grad_x),
        grad_gamma->flat<float>().data(), grad_beta->flat<float>().data(), in.shape,
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
extern "C" __attribute__((visibility("default"))) const char* CctKernelIsaError() {
  return cct_kernels::KernelIsaError();
}
