// The element types of the CUDA kernels: float32, bfloat16 and float16 tensors, loaded into and
// stored from float32 arithmetic. 16-bit tensors arrive as raw bits (the launchers take void*),
// so TensorFlow's Eigen types and PyTorch's never meet CUDA's in one translation unit.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include <type_traits>

#include "launchers.h"

namespace cct_cuda {

template <int kCode>
struct Element;

template <>
struct Element<CCT_CUDA_FLOAT32> {
  using Storage = float;
  __device__ static float Load(float x) { return x; }
  __device__ static float Store(float x) { return x; }
};

template <>
struct Element<CCT_CUDA_BFLOAT16> {
  using Storage = uint16_t;
  __device__ static float Load(uint16_t bits) { return __uint_as_float(uint32_t{bits} << 16); }
  __device__ static uint16_t Store(float x) { return __bfloat16_as_ushort(__float2bfloat16_rn(x)); }
  // Two floats rounded into one 32-bit register, `low` in the low half (the first element).
  __device__ static uint32_t Pack(float low, float high) {
    return uint32_t{Store(low)} | (uint32_t{Store(high)} << 16);
  }
};

template <>
struct Element<CCT_CUDA_FLOAT16> {
  using Storage = uint16_t;
  __device__ static float Load(uint16_t bits) { return __half2float(__ushort_as_half(bits)); }
  __device__ static uint16_t Store(float x) { return __half_as_ushort(__float2half_rn(x)); }
  __device__ static uint32_t Pack(float low, float high) {
    return uint32_t{Store(low)} | (uint32_t{Store(high)} << 16);
  }
};

#define CCT_ALL_DTYPES CCT_CUDA_FLOAT32, CCT_CUDA_BFLOAT16, CCT_CUDA_FLOAT16

// launch(std::integral_constant<int, code>) for dtype among `codes`, else CCT_CUDA_BAD_DTYPE.
template <int... kCodes, typename Launch>
int ForDtype(int dtype, Launch launch) {
  int result = CCT_CUDA_BAD_DTYPE;
  ((dtype == kCodes ? (result = launch(std::integral_constant<int, kCodes>{}), 0) : 0), ...);
  return result;
}

}  // namespace cct_cuda
