// CPU kernels of the cct_fast custom ops, free of TensorFlow so they can be built and tested
// on their own. The TensorFlow glue (kernels/tf/ops_cpu.cc) passes raw pointers and a ParallelFor
// over its intra-op thread pool.
//
// Layouts, all row-major and contiguous:
//   qkv        (batch, tokens, 3, heads, head_dim)   the packed projection, as nn.Linear makes it
//   out        (batch, tokens, heads, head_dim)      heads already merged
//   logsumexp  (batch, heads, tokens)                float32, of the scaled scores of each query
//   tokens     (batch, tokens, dim); kernel (dim); weights (batch, tokens)
// bfloat16 tensors are passed as their raw 16-bit patterns (uint16_t).
#pragma once

#include <stdint.h>

namespace cct_kernels {

// run(pool, count, cost_per_unit, body, context) calls body(context, begin, end) over [0, count),
// split across the caller's threads; cost_per_unit in CPU cycles. Plain function pointers, not
// std::function: the kernels compiled for each instruction set share no library code (see
// CMakeLists.txt), and std::function's members are such code.
struct ParallelFor {
  typedef void (*Body)(const void* context, int64_t begin, int64_t end);
  void (*run)(void* pool, int64_t count, int64_t cost_per_unit, Body body, const void* context);
  void* pool;
};

struct AttentionShape {
  int64_t batch, tokens, heads, head_dim;
  float scale;
  // keep < 1: dropout on the attention probabilities, each kept with probability keep and
  // scaled by 1 / keep, drawn from (seed0, seed1) as kernels/common/philox.h says.
  float keep = 1.0f;
  uint32_t seed0 = 0, seed1 = 0;
  // A key-padding mask (batch, tokens), nonzero where the token is real, or null: none. As the
  // official MaskedAttention fills every score that involves a padded token with the most
  // negative value, a real query gives padded keys probability 0, and a padded query attends
  // uniformly to every token with scores that take no gradient.
  const uint8_t* mask = nullptr;
};

struct PoolShape {
  int64_t batch, tokens, dim;
};

// LayerNorm of `rows` rows of `width`: x, residual (or null), y and grad_y (rows, width);
// gamma, beta, grad_gamma, grad_beta (width); mean and rstd (rows), float32.
struct LayerNormShape {
  int64_t rows, width;
  float epsilon;
  // The residual's factor per sample, or null: 1. Row r's residual is multiplied by
  // residual_scale[r / rows_per_sample] (drop path's 0 or 1 / keep) before it is added.
  const float* residual_scale = nullptr;
  int64_t rows_per_sample = 1;
  // A bias of the residual (width), added to it before its factor, or null: none. The linear
  // layer that made the residual leaves its bias to this add.
  const float* residual_bias = nullptr;
};

// y = x + factor * (residual + bias) over `rows` rows of `width`, the factor per sample and the
// bias as LayerNormShape's; x may be null (y = factor * residual: the gradient of residual).
struct ResidualAddShape {
  int64_t rows, width;
  const float* residual_scale;
  int64_t rows_per_sample;
  const float* residual_bias = nullptr;
};

// Exact GELU of x + bias: x, y, grad_y and grad_x (rows, width); bias and grad_bias (width),
// float32.
struct BiasGeluShape {
  int64_t rows, width;
};

// The instruction set the kernels run with: "avx512_bf16", "avx512", "avx2" or "baseline", the
// widest this CPU has, or a narrower one named by the environment variable CCT_FAST_KERNEL_ISA
// (read once per process).
const char* KernelIsa();
// Why CCT_FAST_KERNEL_ISA was not followed (an unknown name, or one this CPU cannot run), or
// null. The kernels then run with the widest instruction set this CPU has.
const char* KernelIsaError();

void AttentionForward(const float* qkv, float* out, float* logsumexp, const AttentionShape& shape,
                      const ParallelFor& parallel_for);
void AttentionForward(const uint16_t* qkv, uint16_t* out, float* logsumexp,
                      const AttentionShape& shape, const ParallelFor& parallel_for);
void AttentionBackward(const float* qkv, const float* out, const float* logsumexp,
                       const float* grad_out, float* grad_qkv, const AttentionShape& shape,
                       const ParallelFor& parallel_for);
void AttentionBackward(const uint16_t* qkv, const uint16_t* out, const float* logsumexp,
                       const uint16_t* grad_out, uint16_t* grad_qkv, const AttentionShape& shape,
                       const ParallelFor& parallel_for);

void SequencePoolForward(const float* tokens, const float* kernel, float bias, float* out,
                         float* weights, const PoolShape& shape, const ParallelFor& parallel_for);
void SequencePoolBackward(const float* tokens, const float* kernel, const float* weights,
                          const float* grad_out, float* grad_tokens, float* grad_kernel,
                          float* grad_bias, const PoolShape& shape,
                          const ParallelFor& parallel_for);

void LayerNormForward(const float* x, const float* residual, const float* gamma, const float* beta,
                      float* y, float* mean, float* rstd, const LayerNormShape& shape,
                      const ParallelFor& parallel_for);
void LayerNormForward(const uint16_t* x, const uint16_t* residual, const float* gamma,
                      const float* beta, uint16_t* y, float* mean, float* rstd,
                      const LayerNormShape& shape, const ParallelFor& parallel_for);
// grad_residual: null where the residual's gradient is grad_x itself (no residual_scale), else
// written: grad_x times the row's factor. grad_residual_bias (width): null, or written with the
// sum of that over rows (the gradient of residual_bias).
void LayerNormBackward(const float* x, const float* residual, const float* gamma, const float* mean,
                       const float* rstd, const float* grad_y, float* grad_x, float* grad_residual,
                       float* grad_residual_bias, float* grad_gamma, float* grad_beta,
                       const LayerNormShape& shape, const ParallelFor& parallel_for);
void LayerNormBackward(const uint16_t* x, const uint16_t* residual, const float* gamma,
                       const float* mean, const float* rstd, const uint16_t* grad_y,
                       uint16_t* grad_x, uint16_t* grad_residual, float* grad_residual_bias,
                       float* grad_gamma, float* grad_beta, const LayerNormShape& shape,
                       const ParallelFor& parallel_for);

// scaled_sums (width): null, or written with the sum over rows of factor * (residual + bias); run
// with x null on the gradient of y, that is the gradient of a bias of the residual.
void ResidualAdd(const float* x, const float* residual, float* y, float* scaled_sums,
                 const ResidualAddShape& shape, const ParallelFor& parallel_for);
void ResidualAdd(const uint16_t* x, const uint16_t* residual, uint16_t* y, float* scaled_sums,
                 const ResidualAddShape& shape, const ParallelFor& parallel_for);

void BiasGeluForward(const float* x, const float* bias, float* y, const BiasGeluShape& shape,
                     const ParallelFor& parallel_for);
void BiasGeluForward(const uint16_t* x, const float* bias, uint16_t* y, const BiasGeluShape& shape,
                     const ParallelFor& parallel_for);
void BiasGeluBackward(const float* x, const float* bias, const float* grad_y, float* grad_x,
                      float* grad_bias, const BiasGeluShape& shape,
                      const ParallelFor& parallel_for);
void BiasGeluBackward(const uint16_t* x, const float* bias, const uint16_t* grad_y,
                      uint16_t* grad_x, float* grad_bias, const BiasGeluShape& shape,
                      const ParallelFor& parallel_for);

}  // namespace cct_kernels
