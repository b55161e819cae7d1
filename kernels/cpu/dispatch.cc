// Picks, once per process, the build of kernels_isa.cc that this CPU can run.
#include "kernels.h"

namespace cct_kernels {

#define CCT_DECLARE_ISA(ns)                                                                       \
  namespace ns {                                                                                  \
  void AttentionForward(const float*, float*, float*, const AttentionShape&, const ParallelFor&); \
  void AttentionForward(const uint16_t*, uint16_t*, float*, const AttentionShape&,                \
                        const ParallelFor&);                                                      \
  void AttentionBackward(const float*, const float*, const float*, const float*, float*,          \
                         const AttentionShape&, const ParallelFor&);                              \
  void AttentionBackward(const uint16_t*, const uint16_t*, const float*, const uint16_t*,         \
                         uint16_t*, const AttentionShape&, const ParallelFor&);                   \
  void SequencePoolForward(const float*, const float*, float, float*, float*, const PoolShape&,   \
                           const ParallelFor&);                                                   \
  void SequencePoolBackward(const float*, const float*, const float*, const float*, float*,       \
                            float*, float*, const PoolShape&, const ParallelFor&);                \
  void LayerNormForward(const float*, const float*, const float*, const float*, float*, float*,   \
                        float*, const LayerNormShape&, const ParallelFor&);                       \
  void LayerNormForward(const uint16_t*, const uint16_t*, const float*, const float*, uint16_t*,  \
                        float*, float*, const LayerNormShape&, const ParallelFor&);               \
  void LayerNormBackward(const float*, const float*, const float*, const float*, const float*,    \
                         const float*, float*, float*, float*, const LayerNormShape&,             \
                         const ParallelFor&);                                                     \
  void LayerNormBackward(const uint16_t*, const uint16_t*, const float*, const float*,            \
                         const float*, const uint16_t*, uint16_t*, float*, float*,                \
                         const LayerNormShape&, const ParallelFor&);                              \
  }
CCT_DECLARE_ISA(avx512_bf16)
CCT_DECLARE_ISA(avx512)
CCT_DECLARE_ISA(avx2)
CCT_DECLARE_ISA(baseline)
#undef CCT_DECLARE_ISA

namespace {

enum class Isa { kAvx512Bf16, kAvx512, kAvx2, kBaseline };

Isa Detect() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl")) {
    return __builtin_cpu_supports("avx512bf16") ? Isa::kAvx512Bf16 : Isa::kAvx512;
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::kAvx2;
  return Isa::kBaseline;
}

Isa Selected() {
  static const Isa isa = Detect();
  return isa;
}

}  // namespace

#define CCT_DISPATCH(function, ...)              \
  switch (Selected()) {                          \
    case Isa::kAvx512Bf16:                       \
      return avx512_bf16::function(__VA_ARGS__); \
    case Isa::kAvx512:                           \
      return avx512::function(__VA_ARGS__);      \
    case Isa::kAvx2:                             \
      return avx2::function(__VA_ARGS__);        \
    case Isa::kBaseline:                         \
      return baseline::function(__VA_ARGS__);    \
  }

const char* KernelIsa() {
  switch (Selected()) {
    case Isa::kAvx512Bf16:
      return "avx512_bf16";
    case Isa::kAvx512:
      return "avx512";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kBaseline:
      return "baseline";
  }
  return "baseline";
}

void AttentionForward(const float* qkv, float* out, float* lse, const AttentionShape& shape,
                      const ParallelFor& parallel_for) {
  CCT_DISPATCH(AttentionForward, qkv, out, lse, shape, parallel_for)
}
void AttentionForward(const uint16_t* qkv, uint16_t* out, float* lse, const AttentionShape& shape,
                      const ParallelFor& parallel_for) {
  CCT_DISPATCH(AttentionForward, qkv, out, lse, shape, parallel_for)
}
void AttentionBackward(const float* qkv, const float* out, const float* lse, const float* grad_out,
                       float* grad_qkv, const AttentionShape& shape,
                       const ParallelFor& parallel_for) {
  CCT_DISPATCH(AttentionBackward, qkv, out, lse, grad_out, grad_qkv, shape, parallel_for)
}
void AttentionBackward(const uint16_t* qkv, const uint16_t* out, const float* lse,
                       const uint16_t* grad_out, uint16_t* grad_qkv, const AttentionShape& shape,
                       const ParallelFor& parallel_for) {
  CCT_DISPATCH(AttentionBackward, qkv, out, lse, grad_out, grad_qkv, shape, parallel_for)
}
void SequencePoolForward(const float* tokens, const float* kernel, float bias, float* out,
                         float* weights, const PoolShape& shape, const ParallelFor& parallel_for) {
  CCT_DISPATCH(SequencePoolForward, tokens, kernel, bias, out, weights, shape, parallel_for)
}
void SequencePoolBackward(const float* tokens, const float* kernel, const float* weights,
                          const float* grad_out, float* grad_tokens, float* grad_kernel,
                          float* grad_bias, const PoolShape& shape,
                          const ParallelFor& parallel_for) {
  CCT_DISPATCH(SequencePoolBackward, tokens, kernel, weights, grad_out, grad_tokens, grad_kernel,
               grad_bias, shape, parallel_for)
}

void LayerNormForward(const float* x, const float* residual, const float* gamma, const float* beta,
                      float* y, float* mean, float* rstd, const LayerNormShape& shape,
                      const ParallelFor& parallel_for) {
  CCT_DISPATCH(LayerNormForward, x, residual, gamma, beta, y, mean, rstd, shape, parallel_for)
}
void LayerNormForward(const uint16_t* x, const uint16_t* residual, const float* gamma,
                      const float* beta, uint16_t* y, float* mean, float* rstd,
                      const LayerNormShape& shape, const ParallelFor& parallel_for) {
  CCT_DISPATCH(LayerNormForward, x, residual, gamma, beta, y, mean, rstd, shape, parallel_for)
}
void LayerNormBackward(const float* x, const float* residual, const float* gamma, const float* mean,
                       const float* rstd, const float* grad_y, float* grad_x, float* grad_gamma,
                       float* grad_beta, const LayerNormShape& shape,
                       const ParallelFor& parallel_for) {
  CCT_DISPATCH(LayerNormBackward, x, residual, gamma, mean, rstd, grad_y, grad_x, grad_gamma,
               grad_beta, shape, parallel_for)
}
void LayerNormBackward(const uint16_t* x, const uint16_t* residual, const float* gamma,
                       const float* mean, const float* rstd, const uint16_t* grad_y,
                       uint16_t* grad_x, float* grad_gamma, float* grad_beta,
                       const LayerNormShape& shape, const ParallelFor& parallel_for) {
  CCT_DISPATCH(LayerNormBackward, x, residual, gamma, mean, rstd, grad_y, grad_x, grad_gamma,
               grad_beta, shape, parallel_for)
}

}  // namespace cct_kernels
