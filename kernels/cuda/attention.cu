// Fused attention on CUDA, float32, FlashAttention-style: each block streams K and V tiles of
// one (batch, head) through shared memory and keeps an online softmax per query, so the score
// matrix never reaches global memory. One thread owns one query row (forward, dQ) or one key row
// (dK, dV); the backward recomputes probabilities from the saved log-sum-exp. A key-padding mask
// applies as attention_common.cuh says. Dropout (keep < 1)
// scales each probability by 0 or 1 / keep from the counter-based Philox of
// kernels/common/philox.h: the forward and both backward kernels regenerate the same factors,
// and the CPU kernels draw the same mask.
#include <cuda_runtime.h>

#include "attention_common.cuh"
#include "launchers.h"

namespace {

using cct_cuda::Dropout;
using cct_cuda::Geometry;
using cct_cuda::KeyMask;

constexpr int kBlock = 64;  // query (or key) rows per block, one per thread
constexpr int kTile = 32;   // key (or query) rows per shared-memory tile

__device__ int TileRows(int64_t remaining) {
  return static_cast<int>(remaining < kTile ? remaining : kTile);
}

// Loads rows [row0, row0 + kTile) of `part` into tile (kTile x D), zero past the end.
template <int D>
__device__ void LoadTile(const float* qkv, const Geometry& g, int64_t b, int64_t h, int part,
                         int64_t row0, float (*tile)[D]) {
  for (int i = threadIdx.x; i < kTile * D; i += blockDim.x) {
    const int r = i / D, d = i % D;
    const int64_t token = row0 + r;
    tile[r][d] = token < g.tokens ? qkv[g.Qkv(b, h, token, part, D) + d] : 0.0f;
  }
}

// The next tile of keys and values, once every thread is done with the previous one.
template <int D>
__device__ int LoadKeysAndValues(const float* qkv, const Geometry& g, int64_t b, int64_t h,
                                 int64_t key0, float (*keys)[D], float (*values)[D]) {
  __syncthreads();
  LoadTile<D>(qkv, g, b, h, 1, key0, keys);
  LoadTile<D>(qkv, g, b, h, 2, key0, values);
  __syncthreads();
  return TileRows(g.tokens - key0);
}

template <int D>
__global__ void __launch_bounds__(kBlock)
    ForwardKernel(const float* __restrict__ qkv, const uint8_t* __restrict__ mask,
                  float* __restrict__ out, float* __restrict__ logsumexp, Geometry g, float scale,
                  Dropout dropout) {
  __shared__ float keys[kTile][D];
  __shared__ float values[kTile][D];
  const int64_t b = blockIdx.z, h = blockIdx.y;
  const int64_t query = blockIdx.x * kBlock + threadIdx.x;
  const bool active = query < g.tokens;
  const KeyMask key_mask = KeyMask::Of(mask, b, g.tokens);
  const bool padded = active && key_mask.PaddedQuery(query);
  float q[D], acc[D];
  for (int d = 0; d < D; ++d) {
    q[d] = active ? qkv[g.Qkv(b, h, query, 0, D) + d] * scale : 0.0f;
    acc[d] = 0.0f;
  }
  float max = -INFINITY, sum = 0.0f;
  cct_philox::Words words{};
  for (int64_t key0 = 0; key0 < g.tokens; key0 += kTile) {
    const int count = LoadKeysAndValues<D>(qkv, g, b, h, key0, keys, values);
    for (int j = 0; j < (active ? count : 0); ++j) {
      float s = 0.0f;
#pragma unroll
      for (int d = 0; d < D; ++d) s += q[d] * keys[j][d];
      if (dropout.Active() && j % 4 == 0) words = dropout.Words(query, key0 + j, b * g.heads + h);
      s = key_mask.Score(s, padded, key0 + j);
      if (s == -INFINITY) continue;  // a padded key: probability 0
      const float new_max = fmaxf(max, s);
      const float correction = __expf(max - new_max);
      const float p = __expf(s - new_max);
      sum = sum * correction + p;  // the denominator counts every probability
      const float kept = dropout.Active() ? p * dropout.Factor(words, key0 + j) : p;
#pragma unroll
      for (int d = 0; d < D; ++d) acc[d] = acc[d] * correction + kept * values[j][d];
      max = new_max;
    }
  }
  if (!active) return;
  const float inverse = 1.0f / sum;
  float* dst = out + g.Out(b, h, query, D);
  for (int d = 0; d < D; ++d) dst[d] = acc[d] * inverse;
  logsumexp[(b * g.heads + h) * g.tokens + query] = max + logf(sum);
}

// delta = rowsum(dO * O), per (batch, head, query).
template <int D>
__global__ void DeltaKernel(const float* __restrict__ out, const float* __restrict__ grad_out,
                            float* __restrict__ delta, Geometry g, int64_t rows) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= rows) return;
  const int64_t token = i % g.tokens, h = (i / g.tokens) % g.heads, b = i / (g.tokens * g.heads);
  const int64_t offset = g.Out(b, h, token, D);
  float total = 0.0f;
  for (int d = 0; d < D; ++d) total += out[offset + d] * grad_out[offset + d];
  delta[i] = total;
}

// One thread per key: dV = sum_i f_ij P_ij dO_i, dK = scale * sum_i dS_ij q_i, with
// dS_ij = P_ij (f_ij dP_ij - delta_i) and f the dropout factors (1 without dropout).
template <int D>
__global__ void __launch_bounds__(kBlock)
    KeyGradKernel(const float* __restrict__ qkv, const uint8_t* __restrict__ mask,
                  const float* __restrict__ grad_out, const float* __restrict__ logsumexp,
                  const float* __restrict__ delta, float* __restrict__ grad_qkv, Geometry g,
                  float scale, Dropout dropout) {
  __shared__ float queries[kTile][D];
  __shared__ float grads[kTile][D];
  __shared__ float lse[kTile], dlt[kTile];
  __shared__ bool padded[kTile];
  const int64_t b = blockIdx.z, h = blockIdx.y;
  const int64_t key = blockIdx.x * kBlock + threadIdx.x;
  const bool active = key < g.tokens;
  const KeyMask key_mask = KeyMask::Of(mask, b, g.tokens);
  float k[D], v[D], dk[D], dv[D];
  for (int d = 0; d < D; ++d) {
    k[d] = active ? qkv[g.Qkv(b, h, key, 1, D) + d] : 0.0f;
    v[d] = active ? qkv[g.Qkv(b, h, key, 2, D) + d] : 0.0f;
    dk[d] = dv[d] = 0.0f;
  }
  const int64_t row = (b * g.heads + h) * g.tokens;
  for (int64_t query0 = 0; query0 < g.tokens; query0 += kTile) {
    __syncthreads();
    LoadTile<D>(qkv, g, b, h, 0, query0, queries);
    for (int i = threadIdx.x; i < kTile * D; i += blockDim.x) {
      const int r = i / D, d = i % D;
      const int64_t token = query0 + r;
      grads[r][d] = token < g.tokens ? grad_out[g.Out(b, h, token, D) + d] : 0.0f;
    }
    for (int r = threadIdx.x; r < kTile; r += blockDim.x) {
      const int64_t token = query0 + r;
      lse[r] = token < g.tokens ? logsumexp[row + token] : 0.0f;
      dlt[r] = token < g.tokens ? delta[row + token] : 0.0f;
      padded[r] = token < g.tokens && key_mask.PaddedQuery(token);
    }
    __syncthreads();
    const int count = active ? TileRows(g.tokens - query0) : 0;
    for (int i = 0; i < count; ++i) {
      float s = 0.0f, dp = 0.0f;
#pragma unroll
      for (int d = 0; d < D; ++d) {
        s += queries[i][d] * k[d];
        dp += grads[i][d] * v[d];
      }
      const float p = __expf(key_mask.Score(s * scale, padded[i], key) - lse[i]);
      const float factor =
          dropout.Active() ? dropout.Factor(dropout.Words(query0 + i, key, b * g.heads + h), key)
                           : 1.0f;
      const float ds = padded[i] ? 0.0f : p * (dp * factor - dlt[i]) * scale;
#pragma unroll
      for (int d = 0; d < D; ++d) {
        dv[d] += p * factor * grads[i][d];
        dk[d] += ds * queries[i][d];
      }
    }
  }
  if (!active) return;
  float* dst_k = grad_qkv + g.Qkv(b, h, key, 1, D);
  float* dst_v = grad_qkv + g.Qkv(b, h, key, 2, D);
  for (int d = 0; d < D; ++d) {
    dst_k[d] = dk[d];
    dst_v[d] = dv[d];
  }
}

// One thread per query: dQ = scale * sum_j dS_ij k_j.
template <int D>
__global__ void __launch_bounds__(kBlock)
    QueryGradKernel(const float* __restrict__ qkv, const uint8_t* __restrict__ mask,
                    const float* __restrict__ grad_out, const float* __restrict__ logsumexp,
                    const float* __restrict__ delta, float* __restrict__ grad_qkv, Geometry g,
                    float scale, Dropout dropout) {
  __shared__ float keys[kTile][D];
  __shared__ float values[kTile][D];
  const int64_t b = blockIdx.z, h = blockIdx.y;
  const int64_t query = blockIdx.x * kBlock + threadIdx.x;
  const KeyMask key_mask = KeyMask::Of(mask, b, g.tokens);
  // A padded query passes no gradient to its scores: its dQ is 0.
  const bool active = query < g.tokens && !key_mask.PaddedQuery(query);
  const int64_t row = (b * g.heads + h) * g.tokens + (query < g.tokens ? query : 0);
  const float lse = logsumexp[row], dlt = delta[row];
  float q[D], dout[D], dq[D];
  for (int d = 0; d < D; ++d) {
    q[d] = active ? qkv[g.Qkv(b, h, query, 0, D) + d] : 0.0f;
    dout[d] = active ? grad_out[g.Out(b, h, query, D) + d] : 0.0f;
    dq[d] = 0.0f;
  }
  cct_philox::Words words{};
  for (int64_t key0 = 0; key0 < g.tokens; key0 += kTile) {
    const int count = LoadKeysAndValues<D>(qkv, g, b, h, key0, keys, values);
    for (int j = 0; j < (active ? count : 0); ++j) {
      float s = 0.0f, dp = 0.0f;
#pragma unroll
      for (int d = 0; d < D; ++d) {
        s += q[d] * keys[j][d];
        dp += dout[d] * values[j][d];
      }
      if (dropout.Active()) {
        if (j % 4 == 0) words = dropout.Words(query, key0 + j, b * g.heads + h);
        dp *= dropout.Factor(words, key0 + j);
      }
      const float ds =
          __expf(key_mask.Score(s * scale, false, key0 + j) - lse) * (dp - dlt) * scale;
#pragma unroll
      for (int d = 0; d < D; ++d) dq[d] += ds * keys[j][d];
    }
  }
  if (query >= g.tokens) return;
  float* dst = grad_qkv + g.Qkv(b, h, query, 0, D);
  for (int d = 0; d < D; ++d) dst[d] = dq[d];
}

template <int D>
int Forward(const float* qkv, const uint8_t* mask, float* out, float* lse, int64_t batch,
            int64_t tokens, int64_t heads, float scale, Dropout dropout, cudaStream_t stream) {
  const Geometry g{tokens, heads, 3 * heads * D};
  ForwardKernel<D><<<cct_cuda::RowBlocks(batch, tokens, heads, kBlock), kBlock, 0, stream>>>(
      qkv, mask, out, lse, g, scale, dropout);
  return static_cast<int>(cudaGetLastError());
}

template <int D>
int Backward(const float* qkv, const uint8_t* mask, const float* out, const float* lse,
             const float* grad_out, float* grad_qkv, float* delta, int64_t batch, int64_t tokens,
             int64_t heads, float scale, Dropout dropout, cudaStream_t stream) {
  const Geometry g{tokens, heads, 3 * heads * D};
  const int64_t rows = batch * heads * tokens;
  DeltaKernel<D><<<static_cast<unsigned>((rows + 255) / 256), 256, 0, stream>>>(out, grad_out,
                                                                                delta, g, rows);
  const dim3 grid = cct_cuda::RowBlocks(batch, tokens, heads, kBlock);
  KeyGradKernel<D>
      <<<grid, kBlock, 0, stream>>>(qkv, mask, grad_out, lse, delta, grad_qkv, g, scale, dropout);
  QueryGradKernel<D>
      <<<grid, kBlock, 0, stream>>>(qkv, mask, grad_out, lse, delta, grad_qkv, g, scale, dropout);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace

extern "C" int cct_cuda_attention_forward(const float* qkv, const uint8_t* mask, float* out,
                                          float* logsumexp, int64_t batch, int64_t tokens,
                                          int64_t heads, int64_t head_dim, float scale, float keep,
                                          uint32_t seed0, uint32_t seed1, void* stream) {
  if (batch == 0 || tokens == 0) return 0;
  return cct_cuda::ForHeadDim(head_dim, [&](auto d) {
    return Forward<decltype(d)::value>(qkv, mask, out, logsumexp, batch, tokens, heads, scale,
                                       Dropout::Of(keep, seed0, seed1),
                                       static_cast<cudaStream_t>(stream));
  });
}

extern "C" int cct_cuda_attention_backward(const float* qkv, const uint8_t* mask, const float* out,
                                           const float* logsumexp, const float* grad_out,
                                           float* grad_qkv, float* delta, int64_t batch,
                                           int64_t tokens, int64_t heads, int64_t head_dim,
                                           float scale, float keep, uint32_t seed0, uint32_t seed1,
                                           void* stream) {
  if (batch == 0 || tokens == 0) return 0;
  return cct_cuda::ForHeadDim(head_dim, [&](auto d) {
    return Backward<decltype(d)::value>(qkv, mask, out, logsumexp, grad_out, grad_qkv, delta, batch,
                                        tokens, heads, scale, Dropout::Of(keep, seed0, seed1),
                                        static_cast<cudaStream_t>(stream));
  });
}

extern "C" const char* cct_cuda_error_string(int code) {
  switch (code) {
    case CCT_CUDA_UNSUPPORTED:
      return "head_dim must be 16, 32, 64 or 128 on the GPU";
    case CCT_CUDA_MISALIGNED:
      return "the 16-bit attention kernels need qkv and grad_output 16-byte aligned";
    case CCT_CUDA_NEEDS_SM80:
      return "the bfloat16 and float16 kernels need a GPU of compute capability 8.0 or newer";
    case CCT_CUDA_BAD_DTYPE:
      return "dtype must be CCT_CUDA_BFLOAT16 or CCT_CUDA_FLOAT16";
    default:
      return cudaGetErrorString(static_cast<cudaError_t>(code));
  }
}
