// Sequence pooling on CUDA: one block per batch element for the scores, softmax and weighted
// sum; the kernel gradient sums over the batch in a second pass. Tokens and outputs in float32,
// bfloat16 or float16; the kernel, the weights and all arithmetic float32.
#include <cuda_runtime.h>

#include "elements.cuh"
#include "launchers.h"

namespace {

constexpr int kThreads = 256;

// Sum (or max) over the block; every thread gets the result.
template <bool kMax>
__device__ float BlockReduce(float value) {
  __shared__ float partial[kThreads / 32];
  for (int offset = 16; offset > 0; offset /= 2) {
    const float other = __shfl_xor_sync(0xffffffffu, value, offset);
    value = kMax ? fmaxf(value, other) : value + other;
  }
  __syncthreads();
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = value;
  __syncthreads();
  value = partial[0];
  for (int w = 1; w < kThreads / 32; ++w)
    value = kMax ? fmaxf(value, partial[w]) : value + partial[w];
  return value;
}

template <int kCode, typename T = typename cct_cuda::Element<kCode>::Storage>
__global__ void __launch_bounds__(kThreads)
    PoolForward(const T* __restrict__ tokens, const float* __restrict__ kernel,
                const float* __restrict__ bias, T* __restrict__ out, float* __restrict__ weights,
                int64_t count, int64_t dim) {
  using E = cct_cuda::Element<kCode>;
  const int64_t b = blockIdx.x;
  const T* t = tokens + b * count * dim;
  float* w = weights + b * count;
  float max = -INFINITY;
  for (int64_t n = threadIdx.x; n < count; n += kThreads) {
    float score = *bias;
    for (int64_t d = 0; d < dim; ++d) score += E::Load(t[n * dim + d]) * kernel[d];
    w[n] = score;
    max = fmaxf(max, score);
  }
  max = BlockReduce<true>(max);
  float total = 0.0f;
  for (int64_t n = threadIdx.x; n < count; n += kThreads) total += (w[n] = __expf(w[n] - max));
  total = BlockReduce<false>(total);
  __syncthreads();  // every w[n] is written
  for (int64_t n = threadIdx.x; n < count; n += kThreads) w[n] /= total;
  __syncthreads();
  for (int64_t d = threadIdx.x; d < dim; d += kThreads) {
    float sum = 0.0f;
    for (int64_t n = 0; n < count; ++n) sum += w[n] * E::Load(t[n * dim + d]);
    out[b * dim + d] = E::Store(sum);
  }
}

// dscore_n = w_n (g . t_n - sum_m w_m g . t_m); dt_n = w_n g + dscore_n kernel.
template <int kCode, typename T = typename cct_cuda::Element<kCode>::Storage>
__global__ void __launch_bounds__(kThreads)
    PoolBackward(const T* __restrict__ tokens, const float* __restrict__ kernel,
                 const float* __restrict__ weights, const T* __restrict__ grad_out,
                 T* __restrict__ grad_tokens, float* __restrict__ score_grads, int64_t count,
                 int64_t dim) {
  using E = cct_cuda::Element<kCode>;
  const int64_t b = blockIdx.x;
  const T* t = tokens + b * count * dim;
  const float* w = weights + b * count;
  const T* g = grad_out + b * dim;
  float* ds = score_grads + b * count;
  float mean = 0.0f;
  for (int64_t n = threadIdx.x; n < count; n += kThreads) {
    float a = 0.0f;
    for (int64_t d = 0; d < dim; ++d) a += E::Load(g[d]) * E::Load(t[n * dim + d]);
    ds[n] = a;
    mean += w[n] * a;
  }
  mean = BlockReduce<false>(mean);
  for (int64_t n = threadIdx.x; n < count; n += kThreads) ds[n] = w[n] * (ds[n] - mean);
  __syncthreads();
  for (int64_t i = threadIdx.x; i < count * dim; i += kThreads) {
    const int64_t n = i / dim, d = i % dim;
    grad_tokens[b * count * dim + i] = E::Store(w[n] * E::Load(g[d]) + ds[n] * kernel[d]);
  }
}

// grad_kernel[d] = sum over (batch, token) of dscore * t[..., d]; block 0 also sums grad_bias.
template <int kCode, typename T = typename cct_cuda::Element<kCode>::Storage>
__global__ void __launch_bounds__(kThreads)
    PoolParameterGrads(const T* __restrict__ tokens, const float* __restrict__ score_grads,
                       float* __restrict__ grad_kernel, float* __restrict__ grad_bias, int64_t rows,
                       int64_t dim) {
  const int64_t d = blockIdx.x;
  float sum = 0.0f;
  for (int64_t i = threadIdx.x; i < rows; i += kThreads)
    sum += score_grads[i] * cct_cuda::Element<kCode>::Load(tokens[i * dim + d]);
  sum = BlockReduce<false>(sum);
  if (threadIdx.x == 0) grad_kernel[d] = sum;
  if (d != 0) return;
  float bias = 0.0f;
  for (int64_t i = threadIdx.x; i < rows; i += kThreads) bias += score_grads[i];
  bias = BlockReduce<false>(bias);
  if (threadIdx.x == 0) *grad_bias = bias;
}

}  // namespace

extern "C" int cct_cuda_sequence_pool_forward(int dtype, const void* tokens, const float* kernel,
                                              const float* bias, void* out, float* weights,
                                              int64_t batch, int64_t count, int64_t dim,
                                              void* stream) {
  return cct_cuda::ForDtype<CCT_ALL_DTYPES>(dtype, [&](auto code) {
    constexpr int kCode = decltype(code)::value;
    using T = typename cct_cuda::Element<kCode>::Storage;
    if (batch == 0) return 0;
    PoolForward<kCode>
        <<<static_cast<unsigned>(batch), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
            static_cast<const T*>(tokens), kernel, bias, static_cast<T*>(out), weights, count, dim);
    return static_cast<int>(cudaGetLastError());
  });
}

extern "C" int cct_cuda_sequence_pool_backward(int dtype, const void* tokens, const float* kernel,
                                               const float* weights, const void* grad_out,
                                               void* grad_tokens, float* grad_kernel,
                                               float* grad_bias, float* score_grads, int64_t batch,
                                               int64_t count, int64_t dim, void* stream) {
  return cct_cuda::ForDtype<CCT_ALL_DTYPES>(dtype, [&](auto code) {
    constexpr int kCode = decltype(code)::value;
    using T = typename cct_cuda::Element<kCode>::Storage;
    const auto s = static_cast<cudaStream_t>(stream);
    if (batch > 0) {
      PoolBackward<kCode><<<static_cast<unsigned>(batch), kThreads, 0, s>>>(
          static_cast<const T*>(tokens), kernel, weights, static_cast<const T*>(grad_out),
          static_cast<T*>(grad_tokens), score_grads, count, dim);
    }
    if (dim == 0) return static_cast<int>(cudaGetLastError());
    PoolParameterGrads<kCode><<<static_cast<unsigned>(dim), kThreads, 0, s>>>(
        static_cast<const T*>(tokens), score_grads, grad_kernel, grad_bias, batch * count, dim);
    return static_cast<int>(cudaGetLastError());
  });
}
