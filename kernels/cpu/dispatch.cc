// Picks, once per process, the build of the *_isa.cc kernels that this CPU can run.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "isa_functions.h"
#include "kernels.h"

namespace cct_kernels {

CCT_DECLARE_ISA(avx512_bf16)
CCT_DECLARE_ISA(avx512)
CCT_DECLARE_ISA(avx2)
CCT_DECLARE_ISA(baseline)
#undef CCT_DECLARE_ISA

namespace {

// Each instruction set runs wherever the ones after it in this list do.
enum class Isa { kBaseline, kAvx2, kAvx512, kAvx512Bf16 };
constexpr const char* kIsaNames[] = {"baseline", "avx2", "avx512", "avx512_bf16"};

Isa Widest() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl")) {
    return __builtin_cpu_supports("avx512bf16") ? Isa::kAvx512Bf16 : Isa::kAvx512;
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::kAvx2;
  return Isa::kBaseline;
}

struct Selection {
  Isa isa;
  char error[192];  // why CCT_FAST_KERNEL_ISA was not followed, or empty
};

// The widest set, or the narrower one CCT_FAST_KERNEL_ISA names (to test or measure the
// kernels of another CPU on this one). Never a set this CPU cannot run.
Selection Select() {
  Selection selection = {Widest(), ""};
  const char* requested = getenv("CCT_FAST_KERNEL_ISA");
  if (requested == nullptr || *requested == '\0') return selection;
  const char* widest = kIsaNames[static_cast<int>(selection.isa)];
  for (int i = 0; i <= static_cast<int>(selection.isa); ++i) {
    if (strcmp(requested, kIsaNames[i]) == 0) {
      selection.isa = static_cast<Isa>(i);
      return selection;
    }
  }
  for (const char* name : kIsaNames) {
    if (strcmp(requested, name) == 0) {
      snprintf(selection.error, sizeof selection.error,
               "CCT_FAST_KERNEL_ISA=%s, but this CPU runs at most %s", requested, widest);
      return selection;
    }
  }
  snprintf(selection.error, sizeof selection.error,
           "CCT_FAST_KERNEL_ISA=%.40s is not one of avx512_bf16, avx512, avx2, baseline",
           requested);
  return selection;
}

const Selection& Selected() {
  static const Selection selection = Select();
  return selection;
}

}  // namespace

#define CCT_DISPATCH(function, ...)              \
  switch (Selected().isa) {                      \
    case Isa::kAvx512Bf16:                       \
      return avx512_bf16::function(__VA_ARGS__); \
    case Isa::kAvx512:                           \
      return avx512::function(__VA_ARGS__);      \
    case Isa::kAvx2:                             \
      return avx2::function(__VA_ARGS__);        \
    case Isa::kBaseline:                         \
      return baseline::function(__VA_ARGS__);    \
  }

const char* KernelIsa() { return kIsaNames[static_cast<int>(Selected().isa)]; }

const char* KernelIsaError() { return Selected().error[0] ? Selected().error : nullptr; }

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
                       const float* rstd, const float* grad_y, float* grad_x, float* grad_residual,
                       float* grad_residual_bias, float* grad_gamma, float* grad_beta,
                       const LayerNormShape& shape, const ParallelFor& parallel_for) {
  CCT_DISPATCH(LayerNormBackward, x, residual, gamma, mean, rstd, grad_y, grad_x, grad_residual,
               grad_residual_bias, grad_gamma, grad_beta, shape, parallel_for)
}
void LayerNormBackward(const uint16_t* x, const uint16_t* residual, const float* gamma,
                       const float* mean, const float* rstd, const uint16_t* grad_y,
                       uint16_t* grad_x, uint16_t* grad_residual, float* grad_residual_bias,
                       float* grad_gamma, float* grad_beta, const LayerNormShape& shape,
                       const ParallelFor& parallel_for) {
  CCT_DISPATCH(LayerNormBackward, x, residual, gamma, mean, rstd, grad_y, grad_x, grad_residual,
               grad_residual_bias, grad_gamma, grad_beta, shape, parallel_for)
}

void ResidualAdd(const float* x, const float* residual, float* y, float* scaled_sums,
                 const ResidualAddShape& shape, const ParallelFor& parallel_for) {
  CCT_DISPATCH(ResidualAdd, x, residual, y, scaled_sums, shape, parallel_for)
}
void ResidualAdd(const uint16_t* x, const uint16_t* residual, uint16_t* y, float* scaled_sums,
                 const ResidualAddShape& shape, const ParallelFor& parallel_for) {
  CCT_DISPATCH(ResidualAdd, x, residual, y, scaled_sums, shape, parallel_for)
}

void BiasGeluForward(const float* x, const float* bias, float* y, const BiasGeluShape& shape,
                     const ParallelFor& parallel_for) {
  CCT_DISPATCH(BiasGeluForward, x, bias, y, shape, parallel_for)
}
void BiasGeluForward(const uint16_t* x, const float* bias, uint16_t* y, const BiasGeluShape& shape,
                     const ParallelFor& parallel_for) {
  CCT_DISPATCH(BiasGeluForward, x, bias, y, shape, parallel_for)
}
void BiasGeluBackward(const float* x, const float* bias, const float* grad_y, float* grad_x,
                      float* grad_bias, const BiasGeluShape& shape,
                      const ParallelFor& parallel_for) {
  CCT_DISPATCH(BiasGeluBackward, x, bias, grad_y, grad_x, grad_bias, shape, parallel_for)
}
void BiasGeluBackward(const uint16_t* x, const float* bias, const uint16_t* grad_y,
                      uint16_t* grad_x, float* grad_bias, const BiasGeluShape& shape,
                      const ParallelFor& parallel_for) {
  CCT_DISPATCH(BiasGeluBackward, x, bias, grad_y, grad_x, grad_bias, shape, parallel_for)
}

}  // namespace cct_kernels
