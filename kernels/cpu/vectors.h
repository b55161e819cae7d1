// The vector basics of the CPU kernels, for the instruction set the including file is compiled
// for (CMake compiles each *_isa.cc once per set, with CCT_ISA naming its namespace): GCC
// vector types of W floats, loads and stores of float32 and of bfloat16 bits, the scalar
// conversions, scratch buffers and the thread-pool call.
//
// Everything an *_isa.cc file compiles lives in its own anonymous namespace, and those files
// include only C headers: a C++ library template or inline function (std::vector, std::fill,
// std::min, std::function...) would be compiled once per instruction set with the same symbol,
// and the linker would keep one of those copies for all of them, so the AVX2 kernels could run
// AVX-512 code. kernels/check_isa.py checks the built library for exactly that.
#pragma once

#include <stdint.h>
#include <string.h>

#include "kernels.h"

#if defined(__SSE__)
#include <immintrin.h>
#endif

#ifndef CCT_ISA
#error "compile with -DCCT_ISA=<namespace>"
#endif

namespace cct_kernels {
namespace CCT_ISA {
namespace {

#if defined(__AVX512F__)
constexpr int W = 16;  // floats per vector
#elif defined(__AVX2__)
constexpr int W = 8;
#else
constexpr int W = 4;
#endif

typedef float vf __attribute__((vector_size(W * sizeof(float))));
typedef int32_t vi __attribute__((vector_size(W * sizeof(int32_t))));
typedef uint32_t vu __attribute__((vector_size(W * sizeof(uint32_t))));
typedef uint16_t vu16 __attribute__((vector_size(W * sizeof(uint16_t))));

// x in every lane. Written as x - 0, which is x for every float (-0 included), so the compiler
// emits a bare broadcast (from memory, where x is loaded); 0 + x is not x for x = -0, and costs
// a scalar add before each broadcast (in the micro-kernels' inner loops, one per row).
inline vf Splat(float x) { return x - vf{}; }

// The sum of a vector's lanes.
inline float Sum(vf v) {
  float total = 0.0f;
  for (int i = 0; i < W; ++i) total += v[i];
  return total;
}

inline vf Load(const float* p) {
  vf v;
  memcpy(&v, p, sizeof v);
  return v;
}
inline void Store(float* p, vf v) { memcpy(p, &v, sizeof v); }

// W bfloat16 values (their raw bits) as floats.
inline vf Load(const uint16_t* p) {
  vu16 halves;
  memcpy(&halves, p, sizeof halves);
  const vu bits = __builtin_convertvector(halves, vu) << 16;
  vf v;
  memcpy(&v, &bits, sizeof v);
  return v;
}
// W floats rounded to bfloat16 (to nearest even, NaN kept quiet, as Eigen rounds).
inline void Store(uint16_t* p, vf v) {
  vu bits;
  memcpy(&bits, &v, sizeof bits);
  const vu rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
  const vu nan = (bits >> 16) | 0x40u;
  const vu halves32 = (bits & 0x7fffffffu) > 0x7f800000u ? nan : rounded;
  const vu16 halves = __builtin_convertvector(halves32, vu16);
  memcpy(p, &halves, sizeof halves);
}

// exp over a vector: Cephes' range reduction and degree-6 polynomial, ~1e-7 relative error.
inline vf Exp(vf x) {
  x = x < Splat(-87.0f) ? Splat(-87.0f) : x;
  x = x > Splat(88.0f) ? Splat(88.0f) : x;
  const vi biased = __builtin_convertvector(x * 1.44269504088896341f + 127.5f, vi);  // > 0
  const vf n = __builtin_convertvector(biased - 127, vf);
  const vf r = x - n * 0.693359375f + n * 2.12194440e-4f;
  vf p = Splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const vf y = p * r * r + r + 1.0f;
  const vi bits = biased << 23;
  vf power;
  memcpy(&power, &bits, sizeof power);
  return y * power;
}

// 1 / x to about float32's precision: the CPU's reciprocal estimate (12 or 14 bits) and one
// Newton step, several times the throughput of a vector division.
inline vf Reciprocal(vf x) {
#if defined(__AVX512F__)
  const vf estimate = (vf)_mm512_rcp14_ps((__m512)x);
#elif defined(__AVX__)
  const vf estimate = (vf)_mm256_rcp_ps((__m256)x);
#elif defined(__SSE__)
  const vf estimate = (vf)_mm_rcp_ps((__m128)x);
#else
  const vf estimate = Splat(1.0f) / x;
#endif
  return estimate * (Splat(2.0f) - x * estimate);
}

// t's W rows of W floats replaced by their transpose, in registers (any 32-bit values: the
// shuffles move bits). AVX2 and AVX-512 interleave pairs, then pairs of pairs, within each
// 128-bit lane, then move the lanes.
inline void Transpose(vf t[W]) {
#if defined(__AVX512F__)
  __m512 a[W], b[W];
  for (int r = 0; r < W; r += 2) {
    a[r] = _mm512_unpacklo_ps((__m512)t[r], (__m512)t[r + 1]);
    a[r + 1] = _mm512_unpackhi_ps((__m512)t[r], (__m512)t[r + 1]);
  }
  // b[4 g + j], lane L: element 4 L + j of rows 4 g .. 4 g + 3.
  for (int r = 0; r < W; r += 4) {
    b[r] = _mm512_shuffle_ps(a[r], a[r + 2], 0x44);
    b[r + 1] = _mm512_shuffle_ps(a[r], a[r + 2], 0xEE);
    b[r + 2] = _mm512_shuffle_ps(a[r + 1], a[r + 3], 0x44);
    b[r + 3] = _mm512_shuffle_ps(a[r + 1], a[r + 3], 0xEE);
  }
  for (int j = 0; j < 4; ++j) {
    const __m512 low01 = _mm512_shuffle_f32x4(b[j], b[4 + j], 0x44);
    const __m512 high01 = _mm512_shuffle_f32x4(b[j], b[4 + j], 0xEE);
    const __m512 low23 = _mm512_shuffle_f32x4(b[8 + j], b[12 + j], 0x44);
    const __m512 high23 = _mm512_shuffle_f32x4(b[8 + j], b[12 + j], 0xEE);
    t[j] = (vf)_mm512_shuffle_f32x4(low01, low23, 0x88);
    t[4 + j] = (vf)_mm512_shuffle_f32x4(low01, low23, 0xDD);
    t[8 + j] = (vf)_mm512_shuffle_f32x4(high01, high23, 0x88);
    t[12 + j] = (vf)_mm512_shuffle_f32x4(high01, high23, 0xDD);
  }
#elif defined(__AVX2__)
  __m256 a[W], b[W];
  for (int r = 0; r < W; r += 2) {
    a[r] = _mm256_unpacklo_ps((__m256)t[r], (__m256)t[r + 1]);
    a[r + 1] = _mm256_unpackhi_ps((__m256)t[r], (__m256)t[r + 1]);
  }
  for (int r = 0; r < W; r += 4) {
    b[r] = _mm256_shuffle_ps(a[r], a[r + 2], 0x44);
    b[r + 1] = _mm256_shuffle_ps(a[r], a[r + 2], 0xEE);
    b[r + 2] = _mm256_shuffle_ps(a[r + 1], a[r + 3], 0x44);
    b[r + 3] = _mm256_shuffle_ps(a[r + 1], a[r + 3], 0xEE);
  }
  for (int j = 0; j < 4; ++j) {
    t[j] = (vf)_mm256_permute2f128_ps(b[j], b[4 + j], 0x20);
    t[4 + j] = (vf)_mm256_permute2f128_ps(b[j], b[4 + j], 0x31);
  }
#elif defined(__SSE__)
  __m128 r0 = (__m128)t[0], r1 = (__m128)t[1], r2 = (__m128)t[2], r3 = (__m128)t[3];
  _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
  t[0] = (vf)r0, t[1] = (vf)r1, t[2] = (vf)r2, t[3] = (vf)r3;
#else
  for (int r = 0; r < W; ++r)
    for (int c = r + 1; c < W; ++c) {
      const float x = t[r][c];
      t[r][c] = t[c][r];
      t[c][r] = x;
    }
#endif
}

inline int64_t RoundUp(int64_t n, int64_t multiple) {
  return (n + multiple - 1) / multiple * multiple;
}
inline int64_t Min(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t Max(int64_t a, int64_t b) { return a < b ? b : a; }

// A scratch array that grows and is never shrunk, kept per thread where it is reused.
template <typename T>
class Buffer {
 public:
  Buffer() = default;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { delete[] data_; }

  // Room for n elements, whose values are undefined.
  T* Reserve(int64_t n) {
    if (n > capacity_) {
      delete[] data_;
      data_ = new T[n];
      capacity_ = n;
    }
    return data_;
  }
  // Room for n elements, all zero.
  T* Zeroed(int64_t n) {
    T* data = Reserve(n);
    memset(data, 0, n * sizeof(T));
    return data;
  }
  T* data() const { return data_; }
  T& operator[](int64_t i) const { return data_[i]; }

 private:
  T* data_ = nullptr;
  int64_t capacity_ = 0;
};

// body(begin, end) over [0, count) on the caller's threads (ParallelFor in kernels.h).
template <typename Body>
void Parallel(const ParallelFor& parallel_for, int64_t count, int64_t cost_per_unit,
              const Body& body) {
  parallel_for.run(
      parallel_for.pool, count, cost_per_unit,
      [](const void* context, int64_t begin, int64_t end) {
        (*static_cast<const Body*>(context))(begin, end);
      },
      &body);
}

inline float ToFloat(float x) { return x; }
inline float ToFloat(uint16_t x) {
  const uint32_t bits = static_cast<uint32_t>(x) << 16;
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}
inline void FromFloat(float x, float* out) { *out = x; }
inline void FromFloat(float x, uint16_t* out) {  // round to nearest even, as Eigen does
  uint32_t bits;
  memcpy(&bits, &x, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u) {
    *out = static_cast<uint16_t>((bits >> 16) | 0x40);  // quiet NaN
    return;
  }
  bits += 0x7fffu + ((bits >> 16) & 1u);
  *out = static_cast<uint16_t>(bits >> 16);
}

}  // namespace
}  // namespace CCT_ISA
}  // namespace cct_kernels
