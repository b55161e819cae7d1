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
const float* Floats(OpKernelContext* context, int input) {
  return context->input(input).flat<float>().data();
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
        in.Floats(in.mean), in.Floats(in.rstd), Raw<T>(*in.grad_y), Raw<T>(grad_x), nullptr,
        nullptr, grad_gamma->flat<float>().data(), grad_beta->flat<float>().data(), in.shape,
        CpuParallelFor(context));
    return absl::OkStatus();
  }
};

namespace {

// x (..., width) and bias (width), checked; their shape for the kernels.
absl::Status BiasGeluShapeOf(const Tensor& x, const Tensor& bias,
                             cct_kernels::BiasGeluShape* shape) {
  if (x.dims() < 1 || bias.dims() != 1 || bias.dim_size(0) != x.dim_size(x.dims() - 1)) {
    return errors::InvalidArgument("CctBiasGelu expects x of shape (..., width) and a bias of ",
                                   "shape (width), got x ", x.shape().DebugString(), " and bias ",
                                   bias.shape().DebugString());
  }
  shape->width = bias.dim_size(0);
  shape->rows = shape->width == 0 ? 0 : x.NumElements() / shape->width;
  return absl::OkStatus();
}

template <typename T>
class BiasGeluOp : public OpKernel {
 public:
  using OpKernel::OpKernel;

  void Compute(OpKernelContext* context) override {
    const Tensor &x = context->input(0), &bias = context->input(1);
    cct_kernels::BiasGeluShape shape;
    OP_REQUIRES_OK(context, BiasGeluShapeOf(x, bias, &shape));
    Tensor* y = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, x.shape(), &y));
    if (shape.rows == 0) return;
    cct_kernels::BiasGeluForward(Raw<T>(x), bias.flat<float>().data(), Raw<T>(y), shape,
                                 CpuParallelFor(context));
  }
};

template <typename T>
class BiasGeluGradOp : public OpKernel {
 public:
  using OpKernel::OpKernel;

  void Compute(OpKernelContext* context) override {
    const Tensor &x = context->input(0), &bias = context->input(1), &grad_y = context->input(2);
    cct_kernels::BiasGeluShape shape;
    OP_REQUIRES_OK(context, BiasGeluShapeOf(x, bias, &shape));
    OP_REQUIRES(
        context, grad_y.shape() == x.shape(),
        errors::InvalidArgument("CctBiasGeluGrad expects grad_y of x's shape ",
                                x.shape().DebugString(), ", got ", grad_y.shape().DebugString()));
    Tensor *grad_x = nullptr, *grad_bias = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, x.shape(), &grad_x));
    OP_REQUIRES_OK(context, context->allocate_output(1, bias.shape(), &grad_bias));
    if (shape.rows == 0) {
      grad_bias->flat<float>().setZero();
      return;
    }
    cct_kernels::BiasGeluBackward(Raw<T>(x), bias.flat<float>().data(), Raw<T>(grad_y),
                                  Raw<T>(grad_x), grad_bias->flat<float>().data(), shape,
                                  CpuParallelFor(context));
  }
};

// The op's list input `name` (none or one tensor): that tensor, or null.
absl::Status Optional(OpKernelContext* context, const char* name, const Tensor** tensor) {
  OpInputList list;
  TF_RETURN_IF_ERROR(context->input_list(name, &list));
  *tensor = list.size() == 0 ? nullptr : &list[0];
  return absl::OkStatus();
}

// branch (batch, ..., width >= 1), x of its shape (or none), scale (batch) float32 and the
// branch's bias (width) float32 (or none), checked; the kernels' rows, per-sample factors and
// bias.
absl::Status DropPathInputs(const Tensor* x, const Tensor& branch, const Tensor& scale,
                            const Tensor* bias, cct_kernels::ResidualAddShape* shape) {
  if (branch.dims() < 2 || branch.dim_size(branch.dims() - 1) == 0) {
    return errors::InvalidArgument("branch must be (batch, ..., width >= 1), got shape ",
                                   branch.shape().DebugString());
  }
  if (x != nullptr && x->shape() != branch.shape()) {
    return errors::InvalidArgument("x must have the branch's shape ", branch.shape().DebugString(),
                                   ", got ", x->shape().DebugString());
  }
  const int64_t batch = branch.dim_size(0), width = branch.dim_size(branch.dims() - 1);
  if (scale.shape() != TensorShape({batch})) {
    return errors::InvalidArgument("scale must be (batch) = (", batch, "), one factor a sample, ",
                                   "got shape ", scale.shape().DebugString());
  }
  if (bias != nullptr && bias->shape() != TensorShape({width})) {
    return errors::InvalidArgument("bias must be (width) = (", width, "), got shape ",
                                   bias->shape().DebugString());
  }
  const int64_t rows = branch.NumElements() / width;
  *shape = {rows, width, scale.flat<float>().data(), batch == 0 ? 1 : rows / batch,
            bias ? bias->flat<float>().data() : nullptr};
  return absl::OkStatus();
}

template <typename T>
class DropPathAddOp : public OpKernel {
 public:
  using OpKernel::OpKernel;

  void Compute(OpKernelContext* context) override {
    const Tensor *x = nullptr, *bias = nullptr;
    OP_REQUIRES_OK(context, Optional(context, "x", &x));
    OP_REQUIRES_OK(context, Optional(context, "bias", &bias));
    const Tensor &branch = context->input(0), &scale = context->input(1);
    cct_kernels::ResidualAddShape shape;
    OP_REQUIRES_OK(context, DropPathInputs(x, branch, scale, bias, &shape));
    Tensor* y = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, branch.shape(), &y));
    if (shape.rows == 0) return;
    cct_kernels::ResidualAdd(x ? Raw<T>(*x) : nullptr, Raw<T>(branch), Raw<T>(y), nullptr, shape,
                             CpuParallelFor(context));
  }
};

// Runs on zero rows too: the bias gradient is then zeros.
template <typename T>
class DropPathAddGradOp : public OpKernel {
 public:
  using OpKernel::OpKernel;

  void Compute(OpKernelContext* context) override {
    const Tensor &grad_y = context->input(0), &scale = context->input(1);
    cct_kernels::ResidualAddShape shape;
    OP_REQUIRES_OK(context, DropPathInputs(nullptr, grad_y, scale, nullptr, &shape));
    Tensor *grad_branch = nullptr, *grad_bias = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, grad_y.shape(), &grad_branch));
    OP_REQUIRES_OK(context, context->allocate_output(1, {shape.width}, &grad_bias));
    cct_kernels::ResidualAdd(nullptr, Raw<T>(grad_y), Raw<T>(grad_branch),
                             grad_bias->flat<float>().data(), shape, CpuParallelFor(context));
  }
};

// The inputs of CctDropPathLayerNorm (gradient false) or its gradient, checked: x, branch, scale
// and the bias; then gamma and beta, or gamma, mean, rstd and grad_y.
absl::Status DropPathLayerNormInputs(OpKernelContext* context, bool gradient, float epsilon,
                                     cct_kernels::LayerNormShape* shape, TensorShape* rows) {
  const Tensor& x = context->input(0);
  const Tensor* bias = nullptr;
  TF_RETURN_IF_ERROR(Optional(context, "bias", &bias));
  cct_kernels::ResidualAddShape residual;
  TF_RETURN_IF_ERROR(DropPathInputs(&x, context->input(1), context->input(2), bias, &residual));
  *rows = x.shape();
  rows->RemoveLastDims(1);
  const TensorShape width({residual.width});
  std::vector<std::pair<int, TensorShape>> expected = {{3, width}, {4, gradient ? *rows : width}};
  if (gradient) expected.insert(expected.end(), {{5, *rows}, {6, x.shape()}});
  TF_RETURN_IF_ERROR(cct_checks::InputShapes(context, expected));
  *shape = {residual.rows,           residual.width,           epsilon,
            residual.residual_scale, residual.rows_per_sample, residual.residual_bias};
  return absl::OkStatus();
}

template <typename T>
class DropPathLayerNormOp : public LayerNormKernel {
 public:
  using LayerNormKernel::LayerNormKernel;

  void Compute(OpKernelContext* context) override {
    cct_kernels::LayerNormShape shape;
    TensorShape rows;
    OP_REQUIRES_OK(context, DropPathLayerNormInputs(context, false, epsilon_, &shape, &rows));
    Tensor *y = nullptr, *mean = nullptr, *rstd = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, context->input(0).shape(), &y));
    OP_REQUIRES_OK(context, context->allocate_output(1, rows, &mean));
    OP_REQUIRES_OK(context, context->allocate_output(2, rows, &rstd));
    if (shape.rows == 0) return;
    cct_kernels::LayerNormForward(Raw<T>(context->input(0)), Raw<T>(context->input(1)),
                                  Floats(context, 3), Floats(context, 4), Raw<T>(y),
                                  mean->flat<float>().data(), rstd->flat<float>().data(), shape,
                                  CpuParallelFor(context));
  }
};

// Runs on zero rows too: the gamma and beta gradients are then zeros.
template <typename T>
class DropPathLayerNormGradOp : public LayerNormKernel {
 public:
  using LayerNormKernel::LayerNormKernel;

  void Compute(OpKernelContext* context) override {
    cct_kernels::LayerNormShape shape;
    TensorShape rows;
    OP_REQUIRES_OK(context, DropPathLayerNormInputs(context, true, epsilon_, &shape, &rows));
    const TensorShape& x_shape = context->input(0).shape();
    Tensor *grad_x = nullptr, *grad_branch = nullptr, *grad_gamma = nullptr, *grad_beta = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, x_shape, &grad_x));
    OP_REQUIRES_OK(context, context->allocate_output(1, x_shape, &grad_branch));
    OP_REQUIRES_OK(context, context->allocate_output(2, {shape.width}, &grad_gamma));
    OP_REQUIRES_OK(context, context->allocate_output(3, {shape.width}, &grad_beta));
    OpOutputList grad_biases;
    OP_REQUIRES_OK(context, context->output_list("grad_bias", &grad_biases));
    Tensor* grad_bias = nullptr;
    if (shape.residual_bias)
      OP_REQUIRES_OK(context, grad_biases.allocate(0, {shape.width}, &grad_bias));
    cct_kernels::LayerNormBackward(Raw<T>(context->input(0)), Raw<T>(context->input(1)),
                                   Floats(context, 3), Floats(context, 4), Floats(context, 5),
                                   Raw<T>(context->input(6)), Raw<T>(grad_x), Raw<T>(grad_branch),
                                   grad_bias ? grad_bias->flat<float>().data() : nullptr,
                                   grad_gamma->flat<float>().data(),
                                   grad_beta->flat<float>().data(), shape, CpuParallelFor(context));
  }
};

#define CCT_REGISTER_BIAS_GELU_KERNELS(T)                                                    \
  REGISTER_KERNEL_BUILDER(Name("CctBiasGelu").Device(DEVICE_CPU).TypeConstraint<T>("T"),     \
                          BiasGeluOp<T>);                                                    \
  REGISTER_KERNEL_BUILDER(Name("CctBiasGeluGrad").Device(DEVICE_CPU).TypeConstraint<T>("T"), \
                          BiasGeluGradOp<T>)
#define CCT_REGISTER_DROP_PATH_KERNELS(T)                                                         \
  REGISTER_KERNEL_BUILDER(Name("CctDropPathAdd").Device(DEVICE_CPU).TypeConstraint<T>("T"),       \
                          DropPathAddOp<T>);                                                      \
  REGISTER_KERNEL_BUILDER(Name("CctDropPathAddGrad").Device(DEVICE_CPU).TypeConstraint<T>("T"),   \
                          DropPathAddGradOp<T>);                                                  \
  REGISTER_KERNEL_BUILDER(Name("CctDropPathLayerNorm").Device(DEVICE_CPU).TypeConstraint<T>("T"), \
                          DropPathLayerNormOp<T>);                                                \
  REGISTER_KERNEL_BUILDER(                                                                        \
      Name("CctDropPathLayerNormGrad").Device(DEVICE_CPU).TypeConstraint<T>("T"),                 \
      DropPathLayerNormGradOp<T>)
CCT_REGISTER_DROP_PATH_KERNELS(float);
CCT_REGISTER_DROP_PATH_KERNELS(bfloat16);
CCT_REGISTER_BIAS_GELU_KERNELS(float);
CCT_REGISTER_BIAS_GELU_KERNELS(bfloat16);

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
