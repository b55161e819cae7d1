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

#include <cstdint>
#include <functional>

namespace cct_kernels {

// body(begin, end) over [0, count), split across threads; cost_per_unit in CPU cycles.
using ParallelFor = std::function<void(int64_t count, int64_t cost_per_unit,
                                       const std::function<void(int64_t, int64_t)>& body)>;

struct AttentionShape {
  int64_t batch, tokens, heads, head_dim;
  float scale;
  // keep < 1: dropout on the attention probabilities, each kept with probability keep and
  // scaled by 1 / keep, drawn from (seed0, seed1) as kernels/common/philox.h says.
  float keep = 1.0f;
  uint32_t seed0 = 0, seed1 = 0;
};

struct PoolShape {
  int64_t batch, tokens, dim;
};

// LayerNorm of `rows` rows of `width`: x, residual (or null), y and grad_y (rows, width);
// gamma, beta, grad_gamma, grad_beta (width); mean and rstd (rows), float32.
struct LayerNormShape {
  int64_t rows, width;
  float epsilon;
};

// The instruction set the kernels run with on this CPU: "avx512_bf16", "avx512", "avx2" or
// "baseline".
const char* KernelIsa();

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
void LayerNormBackward(const float* x, const float* residual, const float* gamma, const float* mean,
                       const float* rstd, const float* grad_y, float* grad_x, float* grad_gamma,
                       float* grad_beta, const LayerNormShape& shape,
                       const ParallelFor& parallel_for);
void LayerNormBackward(const uint16_t* x, const uint16_t* residual, const float* gamma,
                       const float* mean, const float* rstd, const uint16_t* grad_y,
                       uint16_t* grad_x, float* grad_gamma, float* grad_beta,
                       const LayerNormShape& shape, const ParallelFor& parallel_for);

}  // namespace cct_kernels
