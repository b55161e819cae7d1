// The functions every build of the *_isa.cc kernels defines in its namespace (CMake compiles
// them once per instruction set with CCT_ISA naming it), declared for a namespace `ns` inside
// cct_kernels: for dispatch.cc, which picks one build at run time, and
// benchmarks/kernel_ab_main.cc, which links two builds of the same set to time them against each
// other.
#pragma once

#include "kernels.h"

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
                         const float*, float*, float*, float*, float*, float*,                    \
                         const LayerNormShape&, const ParallelFor&);                              \
  void LayerNormBackward(const uint16_t*, const uint16_t*, const float*, const float*,            \
                         const float*, const uint16_t*, uint16_t*, uint16_t*, float*, float*,     \
                         float*, const LayerNormShape&, const ParallelFor&);                      \
  void ResidualAdd(const float*, const float*, float*, float*, const ResidualAddShape&,           \
                   const ParallelFor&);                                                           \
  void ResidualAdd(const uint16_t*, const uint16_t*, uint16_t*, float*, const ResidualAddShape&,  \
                   const ParallelFor&);                                                           \
  void BiasGeluForward(const float*, const float*, float*, const BiasGeluShape&,                  \
                       const ParallelFor&);                                                       \
  void BiasGeluForward(const uint16_t*, const float*, uint16_t*, const BiasGeluShape&,            \
                       const ParallelFor&);                                                       \
  void BiasGeluBackward(const float*, const float*, const float*, float*, float*,                 \
                        const BiasGeluShape&, const ParallelFor&);                                \
  void BiasGeluBackward(const uint16_t*, const float*, const uint16_t*, uint16_t*, float*,        \
                        const BiasGeluShape&, const ParallelFor&);                                \
  }
