// C entry points of the CUDA kernels. They take device pointers, sizes and a cudaStream_t passed
// as void*, and include nothing from TensorFlow or Eigen: kernels/tf/ops_gpu.cc calls them with
// TensorFlow's stream, kernels/harness/check_cuda.py with PyTorch's. Each returns 0, a
// cudaError_t, or CCT_CUDA_UNSUPPORTED (a head_dim without a compiled kernel).
#pragma once

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CCT_CUDA_UNSUPPORTED (-1)
#define CCT_CUDA_EXPORT __attribute__((visibility("default")))

// Layouts as kernels/cpu/kernels.h: qkv (batch, tokens, 3, heads, head_dim), out (batch,
// tokens, heads, head_dim), logsumexp (batch, heads, tokens). head_dim: 16, 32, 64 or 128.
// keep < 1: dropout on the probabilities from the Philox key (seed0, seed1), drawn as
// kernels/common/philox.h says (the CPU kernels draw the same mask).
CCT_CUDA_EXPORT int cct_cuda_attention_forward(const float* qkv, float* out, float* logsumexp,
                                               int64_t batch, int64_t tokens, int64_t heads,
                                               int64_t head_dim, float scale, float keep,
                                               uint32_t seed0, uint32_t seed1, void* stream);
// delta: a (batch, heads, tokens) float workspace.
CCT_CUDA_EXPORT int cct_cuda_attention_backward(const float* qkv, const float* out,
                                                const float* logsumexp, const float* grad_out,
                                                float* grad_qkv, float* delta, int64_t batch,
                                                int64_t tokens, int64_t heads, int64_t head_dim,
                                                float scale, float keep, uint32_t seed0,
                                                uint32_t seed1, void* stream);
// bias: a device scalar.
CCT_CUDA_EXPORT int cct_cuda_sequence_pool_forward(const float* tokens, const float* kernel,
                                                   const float* bias, float* out, float* weights,
                                                   int64_t batch, int64_t count, int64_t dim,
                                                   void* stream);
// score_grads: a (batch, count) float workspace; grad_bias: a device scalar.
CCT_CUDA_EXPORT int cct_cuda_sequence_pool_backward(const float* tokens, const float* kernel,
                                                    const float* weights, const float* grad_out,
                                                    float* grad_tokens, float* grad_kernel,
                                                    float* grad_bias, float* score_grads,
                                                    int64_t batch, int64_t count, int64_t dim,
                                                    void* stream);
CCT_CUDA_EXPORT const char* cct_cuda_error_string(int code);

#ifdef __cplusplus
}
#endif
