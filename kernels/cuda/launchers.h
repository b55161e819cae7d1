// C entry points of the CUDA kernels. They take device pointers, sizes and a cudaStream_t passed
// as void*, and include nothing from TensorFlow or Eigen: kernels/tf/ops_gpu.cc calls them with
// TensorFlow's stream, kernels/harness/check_cuda.py with PyTorch's. Each returns 0, a
// cudaError_t, or CCT_CUDA_UNSUPPORTED (a head_dim without a compiled kernel).
#pragma once

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CCT_CUDA_UNSUPPORTED (-1)  // a head_dim without compiled kernels
#define CCT_CUDA_MISALIGNED (-2)   // a 16-bit tensor not 16-byte aligned
#define CCT_CUDA_NEEDS_SM80 (-3)   // 16-bit tensor-core kernels on a GPU older than sm_80
#define CCT_CUDA_BAD_DTYPE (-4)    // a dtype code the launcher does not take
#define CCT_CUDA_EXPORT __attribute__((visibility("default")))

// The dtype codes of the launchers that take several: 16-bit tensors are passed as raw bits.
#define CCT_CUDA_FLOAT32 0
#define CCT_CUDA_BFLOAT16 1
#define CCT_CUDA_FLOAT16 2

// Layouts as kernels/cpu/kernels.h: qkv (batch, tokens, 3, heads, head_dim), out (batch,
// tokens, heads, head_dim), logsumexp (batch, heads, tokens). head_dim: 16, 32, 64 or 128.
// mask: (batch, tokens) bytes, nonzero where the token is real, or null for none; applied as
// the CPU kernels apply it (attention_common.cuh). keep < 1: dropout on the probabilities from
// the Philox key (seed0, seed1), drawn as kernels/common/philox.h says (the CPU kernels draw
// the same mask).
//
// float32, on CUDA cores (exact: one query row per thread).
CCT_CUDA_EXPORT int cct_cuda_attention_forward(const float* qkv, const uint8_t* mask, float* out,
                                               float* logsumexp, int64_t batch, int64_t tokens,
                                               int64_t heads, int64_t head_dim, float scale,
                                               float keep, uint32_t seed0, uint32_t seed1,
                                               void* stream);
// delta: a (batch, heads, tokens) float workspace.
CCT_CUDA_EXPORT int cct_cuda_attention_backward(const float* qkv, const uint8_t* mask,
                                                const float* out, const float* logsumexp,
                                                const float* grad_out, float* grad_qkv,
                                                float* delta, int64_t batch, int64_t tokens,
                                                int64_t heads, int64_t head_dim, float scale,
                                                float keep, uint32_t seed0, uint32_t seed1,
                                                void* stream);
// bfloat16 or float16 (dtype) on tensor cores, sm_80 and newer: FlashAttention-2's scheme with
// float32 accumulation and softmax (attention_tc.cu). qkv and grad_out 16-byte aligned; the
// logsumexp and delta stay float32.
CCT_CUDA_EXPORT int cct_cuda_attention_forward_16bit(int dtype, const void* qkv,
                                                     const uint8_t* mask, void* out,
                                                     float* logsumexp, int64_t batch,
                                                     int64_t tokens, int64_t heads,
                                                     int64_t head_dim, float scale, float keep,
                                                     uint32_t seed0, uint32_t seed1, void* stream);
CCT_CUDA_EXPORT int cct_cuda_attention_backward_16bit(int dtype, const void* qkv,
                                                      const uint8_t* mask, const void* out,
                                                      const float* logsumexp, const void* grad_out,
                                                      void* grad_qkv, float* delta, int64_t batch,
                                                      int64_t tokens, int64_t heads,
                                                      int64_t head_dim, float scale, float keep,
                                                      uint32_t seed0, uint32_t seed1, void* stream);
// Sequence pooling: tokens (batch, count, dim) and out (batch, dim) in dtype (any of the three
// codes); kernel (dim), weights (batch, count) and the arithmetic float32. bias: a device scalar.
CCT_CUDA_EXPORT int cct_cuda_sequence_pool_forward(int dtype, const void* tokens,
                                                   const float* kernel, const float* bias,
                                                   void* out, float* weights, int64_t batch,
                                                   int64_t count, int64_t dim, void* stream);
// score_grads: a (batch, count) float workspace; grad_bias: a device scalar; grad_tokens in
// dtype, grad_out too.
CCT_CUDA_EXPORT int cct_cuda_sequence_pool_backward(int dtype, const void* tokens,
                                                    const float* kernel, const float* weights,
                                                    const void* grad_out, void* grad_tokens,
                                                    float* grad_kernel, float* grad_bias,
                                                    float* score_grads, int64_t batch,
                                                    int64_t count, int64_t dim, void* stream);
// (Residual +) LayerNorm over rows of `width`: y = (x + residual - mean) * rstd * gamma + beta,
// x, residual (or null), y, grad_y and grad_x in dtype; gamma, beta, the statistics (rows) and
// the parameter gradients float32, as kernels/cpu/kernels.h's LayerNorm.
CCT_CUDA_EXPORT int cct_cuda_layer_norm_forward(int dtype, const void* x, const void* residual,
                                                const float* gamma, const float* beta, void* y,
                                                float* mean, float* rstd, int64_t rows,
                                                int64_t width, float epsilon, void* stream);
// partials: a float workspace of cct_cuda_layer_norm_partials(rows, width) elements.
CCT_CUDA_EXPORT int64_t cct_cuda_layer_norm_partials(int64_t rows, int64_t width);
CCT_CUDA_EXPORT int cct_cuda_layer_norm_backward(int dtype, const void* x, const void* residual,
                                                 const float* gamma, const float* mean,
                                                 const float* rstd, const void* grad_y,
                                                 void* grad_x, float* grad_gamma, float* grad_beta,
                                                 float* partials, int64_t rows, int64_t width,
                                                 void* stream);
CCT_CUDA_EXPORT const char* cct_cuda_error_string(int code);

#ifdef __cplusplus
}
#endif
