// Philox4x32-10 (Salmon, Moraes, Dror and Shaw, "Parallel random numbers: as easy as 1, 2, 3",
// SC'11), the counter-based generator FlashAttention draws its dropout from: four 32-bit
// words from a 128-bit counter and a 64-bit key, with no state between calls. The attention
// kernels use it for dropout so that the backward regenerates the forward's mask from the seed
// instead of storing it; the CPU and CUDA kernels draw the same mask.
//
// Element (batch b, head h, query i, key j) of a call seeded (seed0, seed1) is kept iff
//   Philox(counter = (i, j / 4, b * heads + h, 0), key = (seed0, seed1)).word[j % 4] < threshold
// with threshold = KeepThreshold(keep); a kept probability is scaled by 1 / keep.
// cct_fast/testing/philox.py computes the same mask in numpy.
#pragma once

#include <stdint.h>

#if defined(__CUDACC__)
#define CCT_HOST_DEVICE __host__ __device__ __forceinline__
#else
// static: each per-ISA CPU file keeps its own copy (kernels/cpu/vectors.h says why).
#define CCT_HOST_DEVICE static inline
#endif

namespace cct_philox {

constexpr uint32_t kMultiplier0 = 0xD2511F53u, kMultiplier1 = 0xCD9E8D57u;
constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
constexpr int kRounds = 10;

struct Words {
  uint32_t w[4];
};

CCT_HOST_DEVICE Words Philox(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0,
                             uint32_t k1) {
  for (int round = 0; round < kRounds; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(kMultiplier0) * c0;
    const uint64_t p1 = static_cast<uint64_t>(kMultiplier1) * c2;
    const uint32_t next0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
    const uint32_t next2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
    c1 = static_cast<uint32_t>(p1);
    c3 = static_cast<uint32_t>(p0);
    c0 = next0;
    c2 = next2;
    k0 += kWeyl0;
    k1 += kWeyl1;
  }
  return Words{{c0, c1, c2, c3}};
}

// A word below this keeps its element: keep * 2^32, rounded down (keep in (0, 1)).
CCT_HOST_DEVICE uint32_t KeepThreshold(float keep) {
  const double scaled = static_cast<double>(keep) * 4294967296.0;
  return scaled >= 4294967295.0 ? 0xFFFFFFFFu : static_cast<uint32_t>(scaled);
}

}  // namespace cct_philox
