// The cct_fast op kernels, each written once and templated on the device, as TensorFlow's own
// functor-per-device ops are: an op checks the tensors that arrive (the shape functions' checks
// again, on real tensors, so bad input is a TensorFlow error, never a crash), allocates its
// outputs, and hands them to its device's functor. ops_cpu.cc and ops_gpu.cc define the
// functors and register the kernels for their device.
#pragma once

#include <utility>
#include <vector>

#include "kernels.h"
#include "tensorflow/core/framework/op_kernel.h"

namespace tensorflow {
namespace cct_checks {

// Each (input index, shape): an error that names the first input of another shape.
inline absl::Status InputShapes(OpKernelContext* context,
                                const std::vector<std::pair<int, TensorShape>>& expected) {
  for (const auto& [index, shape_there] : expected) {
    if (context->input(index).shape() != shape_there) {
      return errors::InvalidArgument("input ", index, " of ", context->op_kernel().type_string(),
                                     " must be ", shape_there.DebugString(), ", got ",
                                     context->input(index).shape().DebugString());
    }
  }
  return absl::OkStatus();
}

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

// seed (2,) int32: the dropout's Philox key, into shape.
inline absl::Status DropoutSeed(const Tensor& seed, float rate,
                                cct_kernels::AttentionShape* shape) {
  if (seed.shape() != TensorShape({2})) {
    return errors::InvalidArgument("seed must be two int32 words, shape (2,), got ",
                                   seed.shape().DebugString());
  }
  shape->keep = 1.0f - rate;
  shape->seed0 = static_cast<uint32_t>(seed.flat<int32>()(0));
  shape->seed1 = static_cast<uint32_t>(seed.flat<int32>()(1));
  return absl::OkStatus();
}

// mask (batch, tokens) or (0,), into shape (null for none).
inline absl::Status AttentionMask(const Tensor& mask, cct_kernels::AttentionShape* shape) {
  if (mask.shape() == TensorShape({0})) return absl::OkStatus();
  if (mask.shape() != TensorShape({shape->batch, shape->tokens})) {
    return errors::InvalidArgument("mask must be (batch, tokens) = (", shape->batch, ", ",
                                   shape->tokens, "), or (0,) for none, got ",
                                   mask.shape().DebugString());
  }
  shape->mask = reinterpret_cast<const uint8_t*>(mask.flat<bool>().data());
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

// Base of the attention kernels: reads num_heads, scale and dropout_rate, and checks qkv, the
// seed and the mask (and, for the gradient, output, logsumexp and grad_output).
class AttentionKernel : public OpKernel {
 public:
  explicit AttentionKernel(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("num_heads", &num_heads_));
    OP_REQUIRES_OK(context, context->GetAttr("scale", &scale_));
    OP_REQUIRES_OK(context, context->GetAttr("dropout_rate", &dropout_rate_));
    OP_REQUIRES(context, dropout_rate_ >= 0.0f && dropout_rate_ < 1.0f,
                errors::InvalidArgument("dropout_rate must be in [0, 1), got ", dropout_rate_));
  }

 protected:
  absl::Status CheckInputs(OpKernelContext* context, cct_kernels::AttentionShape* shape) const {
    TF_RETURN_IF_ERROR(cct_checks::AttentionInput(context->input(0), num_heads_, scale_, shape));
    const bool gradient = context->num_inputs() == 6;
    TF_RETURN_IF_ERROR(
        cct_checks::DropoutSeed(context->input(gradient ? 4 : 1), dropout_rate_, shape));
    TF_RETURN_IF_ERROR(cct_checks::AttentionMask(context->input(gradient ? 5 : 2), shape));
    if (!gradient) return absl::OkStatus();
    return cct_checks::AttentionGradInputs(context->input(1), context->input(2), context->input(3),
                                           *shape);
  }

 private:
  int num_heads_;
  float scale_, dropout_rate_;
};

// What each device defines (ops_cpu.cc, ops_gpu.cc): the computation on checked, allocated
// tensors. A functor may allocate temporaries through the context.
template <typename Device, typename T>
struct AttentionFunctor {
  static absl::Status Forward(OpKernelContext* context, const Tensor& qkv, Tensor* out,
                              Tensor* logsumexp, const cct_kernels::AttentionShape& shape);
  static absl::Status Backward(OpKernelContext* context, const Tensor& qkv, const Tensor& out,
                               const Tensor& logsumexp, const Tensor& grad_out, Tensor* grad_qkv,
                               const cct_kernels::AttentionShape& shape);
};

template <typename Device>
struct SequencePoolFunctor {
  static absl::Status Forward(OpKernelContext* context, const Tensor& tokens, const Tensor& kernel,
                              const Tensor& bias, Tensor* out, Tensor* weights,
                              const cct_kernels::PoolShape& shape);
  static absl::Status Backward(OpKernelContext* context, const Tensor& tokens, const Tensor& kernel,
                               const Tensor& weights, const Tensor& grad_out, Tensor* grad_tokens,
                               Tensor* grad_kernel, Tensor* grad_bias,
                               const cct_kernels::PoolShape& shape);
};

template <typename Device, typename T>
class AttentionOp : public AttentionKernel {
 public:
  using AttentionKernel::AttentionKernel;

  void Compute(OpKernelContext* context) override {
    cct_kernels::AttentionShape s;
    OP_REQUIRES_OK(context, CheckInputs(context, &s));
    Tensor *out = nullptr, *logsumexp = nullptr;
    OP_REQUIRES_OK(context,
                   context->allocate_output(0, {s.batch, s.tokens, s.heads * s.head_dim}, &out));
    OP_REQUIRES_OK(context, context->allocate_output(1, {s.batch, s.heads, s.tokens}, &logsumexp));
    if (s.batch == 0) return;
    OP_REQUIRES_OK(context, AttentionFunctor<Device, T>::Forward(context, context->input(0), out,
                                                                 logsumexp, s));
  }
};

template <typename Device, typename T>
class AttentionGradOp : public AttentionKernel {
 public:
  using AttentionKernel::AttentionKernel;

  void Compute(OpKernelContext* context) override {
    cct_kernels::AttentionShape s;
    OP_REQUIRES_OK(context, CheckInputs(context, &s));
    Tensor* grad_qkv = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, context->input(0).shape(), &grad_qkv));
    if (s.batch == 0) return;
    OP_REQUIRES_OK(context, AttentionFunctor<Device, T>::Backward(
                                context, context->input(0), context->input(1), context->input(2),
                                context->input(3), grad_qkv, s));
  }
};

// Base of the pooling kernels: checks tokens and kernel, and the bias (forward) or the weights
// and grad_output (gradient).
class PoolKernel : public OpKernel {
 public:
  using OpKernel::OpKernel;

 protected:
  absl::Status CheckInputs(OpKernelContext* context, cct_kernels::PoolShape* shape) const {
    TF_RETURN_IF_ERROR(cct_checks::PoolInput(context->input(0), context->input(1), shape));
    if (context->num_inputs() == 3) return cct_checks::PoolBias(context->input(2));
    return cct_checks::PoolGradInputs(context->input(2), context->input(3), *shape);
  }
};

template <typename Device>
class SequencePoolOp : public PoolKernel {
 public:
  using PoolKernel::PoolKernel;

  void Compute(OpKernelContext* context) override {
    cct_kernels::PoolShape s;
    OP_REQUIRES_OK(context, CheckInputs(context, &s));
    Tensor *out = nullptr, *weights = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, {s.batch, s.dim}, &out));
    OP_REQUIRES_OK(context, context->allocate_output(1, {s.batch, s.tokens}, &weights));
    if (s.batch == 0) return;
    OP_REQUIRES_OK(
        context, SequencePoolFunctor<Device>::Forward(context, context->input(0), context->input(1),
                                                      context->input(2), out, weights, s));
  }
};

// Runs on an empty batch too: the kernel and bias gradients are then zeros the functor writes.
template <typename Device>
class SequencePoolGradOp : public PoolKernel {
 public:
  using PoolKernel::PoolKernel;

  void Compute(OpKernelContext* context) override {
    cct_kernels::PoolShape s;
    OP_REQUIRES_OK(context, CheckInputs(context, &s));
    Tensor *grad_tokens = nullptr, *grad_kernel = nullptr, *grad_bias = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, context->input(0).shape(), &grad_tokens));
    OP_REQUIRES_OK(context, context->allocate_output(1, context->input(1).shape(), &grad_kernel));
    OP_REQUIRES_OK(context, context->allocate_output(2, TensorShape({}), &grad_bias));
    OP_REQUIRES_OK(context, SequencePoolFunctor<Device>::Backward(
                                context, context->input(0), context->input(1), context->input(2),
                                context->input(3), grad_tokens, grad_kernel, grad_bias, s));
  }
};

// The tensors of a LayerNorm op, checked: x, its residual (or none), gamma, and beta (forward)
// or the saved statistics and grad_y (gradient); the ones an op lacks are null.
struct LayerNormTensors {
  cct_kernels::LayerNormShape shape;
  TensorShape rows;  // x's shape without its last axis: the statistics'
  const Tensor *x, *residual, *gamma;
  const Tensor *beta = nullptr, *mean = nullptr, *rstd = nullptr, *grad_y = nullptr;

  static const float* Floats(const Tensor* t) { return t->flat<float>().data(); }
};

inline absl::Status CheckLayerNormInputs(OpKernelContext* context, bool gradient, float epsilon,
                                         LayerNormTensors* inputs) {
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
  TF_RETURN_IF_ERROR(cct_checks::InputShapes(context, expected));
  *inputs = {{rows.num_elements(), width, epsilon},
             rows,
             &x,
             residuals == 1 ? &context->input(1) : nullptr,
             &context->input(gamma)};
  if (gradient) {
    inputs->mean = &context->input(gamma + 1);
    inputs->rstd = &context->input(gamma + 2);
    inputs->grad_y = &context->input(gamma + 3);
  } else {
    inputs->beta = &context->input(gamma + 1);
  }
  return absl::OkStatus();
}

template <typename Device, typename T>
struct LayerNormFunctor {
  static absl::Status Forward(OpKernelContext* context, const LayerNormTensors& in, Tensor* y,
                              Tensor* mean, Tensor* rstd);
  static absl::Status Backward(OpKernelContext* context, const LayerNormTensors& in, Tensor* grad_x,
                               Tensor* grad_gamma, Tensor* grad_beta);
};

// Base of the LayerNorm kernels: reads epsilon.
class LayerNormKernel : public OpKernel {
 public:
  explicit LayerNormKernel(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("epsilon", &epsilon_));
  }

 protected:
  float epsilon_;
};

template <typename Device, typename T>
class LayerNormOp : public LayerNormKernel {
 public:
  using LayerNormKernel::LayerNormKernel;

  void Compute(OpKernelContext* context) override {
    LayerNormTensors in;
    OP_REQUIRES_OK(context, CheckLayerNormInputs(context, false, epsilon_, &in));
    Tensor *y = nullptr, *mean = nullptr, *rstd = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, in.x->shape(), &y));
    OP_REQUIRES_OK(context, context->allocate_output(1, in.rows, &mean));
    OP_REQUIRES_OK(context, context->allocate_output(2, in.rows, &rstd));
    if (in.shape.rows == 0) return;
    OP_REQUIRES_OK(context, LayerNormFunctor<Device, T>::Forward(context, in, y, mean, rstd));
  }
};

// Runs on zero rows too: the gamma and beta gradients are then zeros.
template <typename Device, typename T>
class LayerNormGradOp : public LayerNormKernel {
 public:
  using LayerNormKernel::LayerNormKernel;

  void Compute(OpKernelContext* context) override {
    LayerNormTensors in;
    OP_REQUIRES_OK(context, CheckLayerNormInputs(context, true, epsilon_, &in));
    Tensor *grad_x = nullptr, *grad_gamma = nullptr, *grad_beta = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, in.x->shape(), &grad_x));
    OP_REQUIRES_OK(context, context->allocate_output(1, {in.shape.width}, &grad_gamma));
    OP_REQUIRES_OK(context, context->allocate_output(2, {in.shape.width}, &grad_beta));
    OP_REQUIRES_OK(
        context, LayerNormFunctor<Device, T>::Backward(context, in, grad_x, grad_gamma, grad_beta));
  }
};

// The kernels of one device, registered under the op names of op_defs.cc. The seed is read on
// the host (two words, the Philox key).
#define CCT_REGISTER_ATTENTION_KERNELS(DEVICE_NAME, DeviceTag, T)                             \
  REGISTER_KERNEL_BUILDER(                                                                    \
      Name("CctAttention").Device(DEVICE_NAME).TypeConstraint<T>("T").HostMemory("seed"),     \
      AttentionOp<DeviceTag, T>);                                                             \
  REGISTER_KERNEL_BUILDER(                                                                    \
      Name("CctAttentionGrad").Device(DEVICE_NAME).TypeConstraint<T>("T").HostMemory("seed"), \
      AttentionGradOp<DeviceTag, T>)
#define CCT_REGISTER_LAYER_NORM_KERNELS(DEVICE_NAME, DeviceTag, T)                             \
  REGISTER_KERNEL_BUILDER(Name("CctLayerNorm").Device(DEVICE_NAME).TypeConstraint<T>("T"),     \
                          LayerNormOp<DeviceTag, T>);                                          \
  REGISTER_KERNEL_BUILDER(Name("CctLayerNormGrad").Device(DEVICE_NAME).TypeConstraint<T>("T"), \
                          LayerNormGradOp<DeviceTag, T>)
#define CCT_REGISTER_POOL_KERNELS(DEVICE_NAME, DeviceTag)                                          \
  REGISTER_KERNEL_BUILDER(Name("CctSequencePool").Device(DEVICE_NAME), SequencePoolOp<DeviceTag>); \
  REGISTER_KERNEL_BUILDER(Name("CctSequencePoolGrad").Device(DEVICE_NAME),                         \
                          SequencePoolGradOp<DeviceTag>)

}  // namespace tensorflow
