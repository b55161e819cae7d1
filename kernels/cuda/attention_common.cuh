// What the CUDA attention kernels share, float32 (attention.cu) and 16-bit (attention_tc.cu):
// the packed qkv layout, the Philox dropout and the key-padding mask, each defined once so the
// kernels agree with each other and with the CPU's (kernels/cpu/kernels.h).
#pragma once

#include <cuda_runtime.h>
#include <stdint.h>

#include <type_traits>

#include "../common/philox.h"
#include "launchers.h"

namespace cct_cuda {

// Offsets into qkv (batch, tokens, 3, heads, head_dim) and out (batch, tokens, heads, head_dim).
struct Geometry {
  int64_t tokens, heads, row_stride;  // row_stride: elements between tokens of qkv
  __device__ int64_t Qkv(int64_t b, int64_t h, int64_t token, int part, int head_dim) const {
    return (b * tokens + token) * row_stride + (part * heads + h) * head_dim;
  }
  __device__ int64_t Out(int64_t b, int64_t h, int64_t token, int head_dim) const {
    return ((b * tokens + token) * heads + h) * head_dim;
  }
};

// The dropout of one call, or none (keep 1).
struct Dropout {
  float keep, scale;  // scale: 1 / keep
  uint32_t threshold, seed0, seed1;

  static Dropout Of(float keep, uint32_t seed0, uint32_t seed1) {
    return Dropout{keep, 1.0f / keep, cct_philox::KeepThreshold(keep), seed0, seed1};
  }
  __device__ bool Active() const { return keep < 1.0f; }
  // The Philox words of keys 4 * (key / 4) .. + 3 for `query` of (batch, head) `head`.
  __device__ cct_philox::Words Words(int64_t query, int64_t key, int64_t head) const {
    return cct_philox::Philox(static_cast<uint32_t>(query), static_cast<uint32_t>(key >> 2),
                              static_cast<uint32_t>(head), 0u, seed0, seed1);
  }
  __device__ float Factor(const cct_philox::Words& words, int64_t key) const {
    return words.w[key & 3] < threshold ? scale : 0.0f;
  }
};

// The key-padding mask of one batch row, as the CPU kernels apply it: a score that involves a
// padded token counts as the most negative value, so a real query ignores padded keys
// (probability 0) and a padded query attends uniformly to every token (its scaled scores all
// 0: log-sum-exp log(tokens)) and passes no gradient to its scores.
struct KeyMask {
  const uint8_t* real;  // the row's tokens, nonzero where real; null: no mask

  __device__ static KeyMask Of(const uint8_t* mask, int64_t b, int64_t tokens) {
    return KeyMask{mask == nullptr ? nullptr : mask + b * tokens};
  }
  __device__ bool PaddedQuery(int64_t query) const { return real != nullptr && real[query] == 0; }
  // The scaled score of (query, key) under the mask; padded_query: PaddedQuery(query).
  __device__ float Score(float scaled, bool padded_query, int64_t key) const {
    if (real == nullptr) return scaled;
    if (padded_query) return 0.0f;
    return real[key] ? scaled : -INFINITY;
  }
};

// One block per `rows` tokens of every (head, batch) pair.
inline dim3 RowBlocks(int64_t batch, int64_t tokens, int64_t heads, int rows) {
  return dim3(static_cast<unsigned>((tokens + rows - 1) / rows), static_cast<unsigned>(heads),
              static_cast<unsigned>(batch));
}

// launch(std::integral_constant<int, head_dim>) for a head_dim with kernels, else
// CCT_CUDA_UNSUPPORTED.
template <typename Launch>
int ForHeadDim(int64_t head_dim, Launch launch) {
  switch (head_dim) {
    case 16:
      return launch(std::integral_constant<int, 16>{});
    case 32:
      return launch(std::integral_constant<int, 32>{});
    case 64:
      return launch(std::integral_constant<int, 64>{});
    case 128:
      return launch(std::integral_constant<int, 128>{});
    default:
      return CCT_CUDA_UNSUPPORTED;
  }
}

}  // namespace cct_cuda
