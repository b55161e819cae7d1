// Attention in bfloat16 and float16 on tensor cores, FlashAttention-2's scheme (Dao, 2023) with
// mma.sync m16n8k16 (sm_80 and newer) and float32 accumulation:
// - forward: each warp holds 16 query rows of Q in registers and streams 64-key tiles of K and V
//   through shared memory; the online softmax runs in float32 on the score accumulators, whose
//   register layout is the A operand's of P V, so P never leaves registers (rounded to the
//   input dtype for the product, as FlashAttention does).
// - backward: a delta pass (rowsum(dO * O)), then dK and dV with the key block as the outer
//   loop (each warp's 16 keys accumulate over every query, S^T and dP^T computed key-major),
//   then dQ with the query block outer: no atomics, so the gradients are deterministic.
// qkv is read packed and the output written with heads merged, as the CPU op does: no
// transposes. The key-padding mask and the Philox dropout are attention_common.cuh's, the same
// as the float32 kernels' and the CPU's.
//
// Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type"),
// lane = 4 * group + quad: A (16x16, row-major) registers {row group, cols 2 quad + (0, 1)},
// {row group + 8, same cols}, {row group, cols 8 + 2 quad + (0, 1)}, {row group + 8, those};
// B (16x8) {rows 2 quad + (0, 1), col group}, {rows 8 + 2 quad + (0, 1), col group};
// C (16x8, float) c0, c1 at row group, cols 2 quad + (0, 1); c2, c3 at row group + 8.
#include <cuda_runtime.h>

#include "attention_common.cuh"
#include "elements.cuh"
#include "launchers.h"

namespace {

using cct_cuda::Dropout;
using cct_cuda::Element;
using cct_cuda::Geometry;
using cct_cuda::KeyMask;

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kWarpRows = 16;                   // query (or key) rows per warp
constexpr int kBlockRows = kWarps * kWarpRows;  // per block
constexpr int kTile = 64;                       // key (or query) rows per shared-memory tile
constexpr int kPad = 8;  // elements after each shared row: the fragment reads hit 32 banks

using Fragment = uint32_t[4];  // an A operand: eight 16-bit elements
using Accumulator = float[4];  // a C operand

// c += a * b on tensor cores (b: the B operand's two registers).
template <int kCode>
__device__ void Mma(Accumulator& c, const Fragment& a, uint32_t b0, uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  if constexpr (kCode == CCT_CUDA_BFLOAT16) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
#else
  __trap();  // the launchers never run these kernels below sm_80
#endif
}

// A shared-memory tile of kTile rows of one head (D elements each, padded).
template <int D>
using Tile = uint16_t[kTile][D + kPad];

struct Lane {
  int warp, group, quad;
  __device__ static Lane Here() {
    const int lane = threadIdx.x % 32;
    return Lane{static_cast<int>(threadIdx.x / 32), lane / 4, lane % 4};
  }
};

__device__ uint32_t Word(const uint16_t* at) { return *reinterpret_cast<const uint32_t*>(at); }
__device__ uint32_t Pair(uint16_t low, uint16_t high) {
  return uint32_t{low} | (uint32_t{high} << 16);
}

// Rows [row0, row0 + kTile) of a head: row r at src + r * stride, zero past `rows`. 16-byte
// copies: D is a multiple of 8 and the launchers check the alignment.
template <int D>
__device__ void LoadTile(const uint16_t* src, int64_t stride, int64_t row0, int64_t rows,
                         Tile<D>& tile) {
  constexpr int kChunks = D / 8;
  for (int i = threadIdx.x; i < kTile * kChunks; i += kThreads) {
    const int r = i / kChunks, c = (i % kChunks) * 8;
    uint4 value = make_uint4(0, 0, 0, 0);
    if (row0 + r < rows) value = *reinterpret_cast<const uint4*>(src + (row0 + r) * stride + c);
    *reinterpret_cast<uint4*>(&tile[r][c]) = value;
  }
}

// The A operand of rows r0.. and columns k0.. of a row-major tile.
template <int D>
__device__ void LoadA(const Tile<D>& tile, int r0, int k0, const Lane& l, Fragment& a) {
  a[0] = Word(&tile[r0 + l.group][k0 + 2 * l.quad]);
  a[1] = Word(&tile[r0 + l.group + 8][k0 + 2 * l.quad]);
  a[2] = Word(&tile[r0 + l.group][k0 + 8 + 2 * l.quad]);
  a[3] = Word(&tile[r0 + l.group + 8][k0 + 8 + 2 * l.quad]);
}

// c += A * tile^T over one 16-deep step: B[k][n] = tile[n0 + n][k0 + k] (tile rows are B's
// columns: keys against queries' dims, say).
template <int kCode, int D>
__device__ void MmaTransposed(Accumulator& c, const Fragment& a, const Tile<D>& tile, int n0,
                              int k0, const Lane& l) {
  const uint16_t* row = &tile[n0 + l.group][k0 + 2 * l.quad];
  Mma<kCode>(c, a, Word(row), Word(row + 8));
}

// c += A * tile over one 16-deep step: B[k][n] = tile[k0 + k][n0 + n] (tile rows are B's rows:
// values against probabilities, say). Two rows per register, so element by element.
template <int kCode, int D>
__device__ void MmaStraight(Accumulator& c, const Fragment& a, const Tile<D>& tile, int k0, int n0,
                            const Lane& l) {
  const int k = k0 + 2 * l.quad, n = n0 + l.group;
  Mma<kCode>(c, a, Pair(tile[k][n], tile[k + 1][n]), Pair(tile[k + 8][n], tile[k + 9][n]));
}

// The A operand of the probabilities (or score gradients) of keys 16 kk .. + 15, from the
// accumulators of S: tiles 2 kk and 2 kk + 1 hold exactly A's elements.
template <int kCode>
__device__ void AccumulatorsAsA(const Accumulator (&s)[kTile / 8], int kk, Fragment& a) {
  using E = Element<kCode>;
  a[0] = E::Pack(s[2 * kk][0], s[2 * kk][1]);
  a[1] = E::Pack(s[2 * kk][2], s[2 * kk][3]);
  a[2] = E::Pack(s[2 * kk + 1][0], s[2 * kk + 1][1]);
  a[3] = E::Pack(s[2 * kk + 1][2], s[2 * kk + 1][3]);
}

// Sum or max over the four lanes of a quad group (one accumulator row).
template <bool kMax>
__device__ float QuadReduce(float value) {
  for (int offset = 1; offset < 4; offset *= 2) {
    const float other = __shfl_xor_sync(0xffffffffu, value, offset);
    value = kMax ? fmaxf(value, other) : value + other;
  }
  return value;
}

// Rows (row0 + r) of the tile's A fragments, 16-deep steps across D.
template <int D>
__device__ void LoadRows(const Tile<D>& tile, int r0, const Lane& l, Fragment (&rows)[D / 16]) {
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) LoadA<D>(tile, r0, kk * 16, l, rows[kk]);
}

// s[n] = A * tile^T for the 8-wide column tiles n of kTile tile rows (a: 16 rows, D deep).
template <int kCode, int D>
__device__ void TimesTransposed(Accumulator (&s)[kTile / 8], const Fragment (&a)[D / 16],
                                const Tile<D>& tile, const Lane& l) {
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk)
#pragma unroll
    for (int n = 0; n < kTile / 8; ++n)
      MmaTransposed<kCode, D>(s[n], a[kk], tile, n * 8, kk * 16, l);
}

// acc += P * tile, P (16 rows x kTile) held in score accumulators, tile (kTile x D).
template <int kCode, int D>
__device__ void AccumulateTimes(Accumulator (&acc)[D / 8], const Accumulator (&p)[kTile / 8],
                                const Tile<D>& tile, const Lane& l) {
#pragma unroll
  for (int kk = 0; kk < kTile / 16; ++kk) {
    Fragment a;
    AccumulatorsAsA<kCode>(p, kk, a);
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt) MmaStraight<kCode, D>(acc[dt], a, tile, kk * 16, dt * 8, l);
  }
}

// Row r (0: the lane's group, 1: group + 8) of acc times factor, into dst's row (D elements).
template <int kCode, int D>
__device__ void StoreRow(uint16_t* dst, const Accumulator (&acc)[D / 8], int r, float factor,
                         const Lane& l) {
#pragma unroll
  for (int dt = 0; dt < D / 8; ++dt) {
    *reinterpret_cast<uint32_t*>(dst + dt * 8 + 2 * l.quad) =
        Element<kCode>::Pack(acc[dt][2 * r] * factor, acc[dt][2 * r + 1] * factor);
  }
}

// Where a thread works: its lane, the (batch, head) of its block, the block's first row and
// the two rows (queries or keys) of the lane's accumulators, and the batch row's mask.
struct Place {
  Lane l;
  int64_t b, h, head, block0, rows[2];
  KeyMask key_mask;

  __device__ static Place Here(const uint8_t* mask, const Geometry& g) {
    const Lane l = Lane::Here();
    const int64_t b = blockIdx.z, h = blockIdx.y;
    const int64_t block0 = static_cast<int64_t>(blockIdx.x) * kBlockRows;
    const int64_t row = block0 + l.warp * kWarpRows + l.group;
    return Place{l, b, h, b * g.heads + h, block0, {row, row + 8}, KeyMask::Of(mask, b, g.tokens)};
  }
};

template <int kCode, int D>
__global__ void __launch_bounds__(kThreads)
    ForwardKernel(const uint16_t* __restrict__ qkv, const uint8_t* __restrict__ mask,
                  uint16_t* __restrict__ out, float* __restrict__ logsumexp, Geometry g,
                  float scale, Dropout dropout) {
  __shared__ alignas(16) Tile<D> keys;
  __shared__ alignas(16) Tile<D> values;
  const Place at = Place::Here(mask, g);
  const Lane& l = at.l;
  bool padded[2];
#pragma unroll
  for (int r = 0; r < 2; ++r)
    padded[r] = at.rows[r] < g.tokens && at.key_mask.PaddedQuery(at.rows[r]);

  // Q through shared memory into registers (the keys' buffer, free until the first tile).
  LoadTile<D>(qkv + g.Qkv(at.b, at.h, 0, 0, D), g.row_stride, at.block0, g.tokens, keys);
  __syncthreads();
  Fragment q[D / 16];
  LoadRows<D>(keys, l.warp * kWarpRows, l, q);

  float max[2] = {-INFINITY, -INFINITY}, sum[2] = {0.0f, 0.0f};
  Accumulator o[D / 8] = {};
  for (int64_t key0 = 0; key0 < g.tokens; key0 += kTile) {
    __syncthreads();  // every warp is done with the previous tiles (or with Q)
    LoadTile<D>(qkv + g.Qkv(at.b, at.h, 0, 1, D), g.row_stride, key0, g.tokens, keys);
    LoadTile<D>(qkv + g.Qkv(at.b, at.h, 0, 2, D), g.row_stride, key0, g.tokens, values);
    __syncthreads();
    Accumulator s[kTile / 8] = {};
    TimesTransposed<kCode, D>(s, q, keys, l);
    float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int n = 0; n < kTile / 8; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int64_t key = key0 + n * 8 + 2 * l.quad + e % 2;
        const int r = e / 2;
        s[n][e] = key < g.tokens ? at.key_mask.Score(s[n][e] * scale, padded[r], key) : -INFINITY;
        tile_max[r] = fmaxf(tile_max[r], s[n][e]);
      }
    }
    float base[2], correction[2], tile_sum[2] = {0.0f, 0.0f};
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const float new_max = fmaxf(max[r], QuadReduce<true>(tile_max[r]));
      base[r] = new_max == -INFINITY ? 0.0f : new_max;  // no finite score yet: all stay 0
      correction[r] = __expf(max[r] - base[r]);
      max[r] = new_max;
    }
#pragma unroll
    for (int n = 0; n < kTile / 8; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[n][e] = __expf(s[n][e] - base[e / 2]);
        tile_sum[e / 2] += s[n][e];  // the denominator counts every probability
      }
      if (dropout.Active()) {  // both of a lane's keys in a row share one Philox draw
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          const int64_t key = key0 + n * 8 + 2 * l.quad;
          const cct_philox::Words words = dropout.Words(at.rows[r], key, at.head);
          s[n][2 * r] *= dropout.Factor(words, key);
          s[n][2 * r + 1] *= dropout.Factor(words, key + 1);
        }
      }
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) sum[r] = sum[r] * correction[r] + QuadReduce<false>(tile_sum[r]);
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt)
#pragma unroll
      for (int e = 0; e < 4; ++e) o[dt][e] *= correction[e / 2];
    AccumulateTimes<kCode, D>(o, s, values, l);
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    if (at.rows[r] >= g.tokens) continue;
    StoreRow<kCode, D>(out + g.Out(at.b, at.h, at.rows[r], D), o, r, 1.0f / sum[r], l);
    if (l.quad == 0) logsumexp[at.head * g.tokens + at.rows[r]] = max[r] + logf(sum[r]);
  }
}

// delta = rowsum(dO * O) in float32, one thread per (batch, head, query).
template <int kCode, int D>
__global__ void DeltaKernel(const uint16_t* __restrict__ out, const uint16_t* __restrict__ grad_out,
                            float* __restrict__ delta, Geometry g, int64_t count) {
  using E = Element<kCode>;
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= count) return;
  const int64_t token = i % g.tokens, h = (i / g.tokens) % g.heads, b = i / (g.tokens * g.heads);
  const int64_t offset = g.Out(b, h, token, D);
  float total = 0.0f;
  for (int d = 0; d < D; ++d) total += E::Load(out[offset + d]) * E::Load(grad_out[offset + d]);
  delta[i] = total;
}

// dK and dV for kBlockRows keys, each warp 16 of them, over every query tile:
// dV = sum_i f_ij P_ij dO_i, dK = scale * sum_i dS_ij q_i, dS_ij = P_ij (f_ij dP_ij - delta_i),
// with f the dropout factors (1 without) and a padded query's dS 0. Computed transposed, keys
// down: S^T = K Q^T and dP^T = V dO^T, whose accumulators are the A operands of P^T dO and
// dS^T Q.
template <int kCode, int D>
__global__ void __launch_bounds__(kThreads)
    KeyGradKernel(const uint16_t* __restrict__ qkv, const uint8_t* __restrict__ mask,
                  const uint16_t* __restrict__ grad_out, const float* __restrict__ logsumexp,
                  const float* __restrict__ delta, uint16_t* __restrict__ grad_qkv, Geometry g,
                  float scale, Dropout dropout) {
  __shared__ alignas(16) Tile<D> queries;
  __shared__ alignas(16) Tile<D> grads;
  __shared__ float lse[kTile], dlt[kTile];
  __shared__ bool padded[kTile];
  const Place at = Place::Here(mask, g);
  const Lane& l = at.l;
  const int64_t out_stride = g.heads * D;

  Fragment k[D / 16], v[D / 16];
  LoadTile<D>(qkv + g.Qkv(at.b, at.h, 0, 1, D), g.row_stride, at.block0, g.tokens, queries);
  LoadTile<D>(qkv + g.Qkv(at.b, at.h, 0, 2, D), g.row_stride, at.block0, g.tokens, grads);
  __syncthreads();
  LoadRows<D>(queries, l.warp * kWarpRows, l, k);
  LoadRows<D>(grads, l.warp * kWarpRows, l, v);

  Accumulator dk[D / 8] = {}, dv[D / 8] = {};
  for (int64_t query0 = 0; query0 < g.tokens; query0 += kTile) {
    __syncthreads();
    LoadTile<D>(qkv + g.Qkv(at.b, at.h, 0, 0, D), g.row_stride, query0, g.tokens, queries);
    LoadTile<D>(grad_out + g.Out(at.b, at.h, 0, D), out_stride, query0, g.tokens, grads);
    for (int i = threadIdx.x; i < kTile; i += kThreads) {
      const int64_t query = query0 + i;
      const bool real = query < g.tokens;
      lse[i] = real ? logsumexp[at.head * g.tokens + query] : 0.0f;
      dlt[i] = real ? delta[at.head * g.tokens + query] : 0.0f;
      padded[i] = real && at.key_mask.PaddedQuery(query);
    }
    __syncthreads();
    Accumulator st[kTile / 8] = {}, dpt[kTile / 8] = {};
    TimesTransposed<kCode, D>(st, k, queries, l);
    TimesTransposed<kCode, D>(dpt, v, grads, l);
#pragma unroll
    for (int n = 0; n < kTile / 8; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int i = n * 8 + 2 * l.quad + e % 2;
        const int64_t query = query0 + i, key = at.rows[e / 2];
        float p = 0.0f, factor = 1.0f;
        if (query < g.tokens && key < g.tokens) {
          p = __expf(at.key_mask.Score(st[n][e] * scale, padded[i], key) - lse[i]);
          if (dropout.Active()) factor = dropout.Factor(dropout.Words(query, key, at.head), key);
        }
        st[n][e] = p * factor;
        dpt[n][e] = padded[i] ? 0.0f : p * (dpt[n][e] * factor - dlt[i]);
      }
    }
    AccumulateTimes<kCode, D>(dv, st, grads, l);
    AccumulateTimes<kCode, D>(dk, dpt, queries, l);
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    if (at.rows[r] >= g.tokens) continue;
    StoreRow<kCode, D>(grad_qkv + g.Qkv(at.b, at.h, at.rows[r], 1, D), dk, r, scale, l);
    StoreRow<kCode, D>(grad_qkv + g.Qkv(at.b, at.h, at.rows[r], 2, D), dv, r, 1.0f, l);
  }
}

// dQ = scale * sum_j dS_ij k_j for kBlockRows queries, each warp 16 of them, over every key
// tile: S = Q K^T and dP = dO V^T recomputed, dS as in KeyGradKernel (0 for a padded query).
template <int kCode, int D>
__global__ void __launch_bounds__(kThreads)
    QueryGradKernel(const uint16_t* __restrict__ qkv, const uint8_t* __restrict__ mask,
                    const uint16_t* __restrict__ grad_out, const float* __restrict__ logsumexp,
                    const float* __restrict__ delta, uint16_t* __restrict__ grad_qkv, Geometry g,
                    float scale, Dropout dropout) {
  __shared__ alignas(16) Tile<D> keys;
  __shared__ alignas(16) Tile<D> values;
  const Place at = Place::Here(mask, g);
  const Lane& l = at.l;
  float lse[2] = {}, dlt[2] = {};
  bool passes[2];  // a real, unpadded query: its scores take gradient
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    passes[r] = at.rows[r] < g.tokens && !at.key_mask.PaddedQuery(at.rows[r]);
    if (at.rows[r] >= g.tokens) continue;
    lse[r] = logsumexp[at.head * g.tokens + at.rows[r]];
    dlt[r] = delta[at.head * g.tokens + at.rows[r]];
  }

  Fragment q[D / 16], dout[D / 16];
  LoadTile<D>(qkv + g.Qkv(at.b, at.h, 0, 0, D), g.row_stride, at.block0, g.tokens, keys);
  LoadTile<D>(grad_out + g.Out(at.b, at.h, 0, D), g.heads * D, at.block0, g.tokens, values);
  __syncthreads();
  LoadRows<D>(keys, l.warp * kWarpRows, l, q);
  LoadRows<D>(values, l.warp * kWarpRows, l, dout);

  Accumulator dq[D / 8] = {};
  for (int64_t key0 = 0; key0 < g.tokens; key0 += kTile) {
    __syncthreads();
    LoadTile<D>(qkv + g.Qkv(at.b, at.h, 0, 1, D), g.row_stride, key0, g.tokens, keys);
    LoadTile<D>(qkv + g.Qkv(at.b, at.h, 0, 2, D), g.row_stride, key0, g.tokens, values);
    __syncthreads();
    Accumulator s[kTile / 8] = {}, dp[kTile / 8] = {};
    TimesTransposed<kCode, D>(s, q, keys, l);
    TimesTransposed<kCode, D>(dp, dout, values, l);
#pragma unroll
    for (int n = 0; n < kTile / 8; ++n) {
      const int64_t key = key0 + n * 8 + 2 * l.quad;
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        cct_philox::Words words{};
        if (dropout.Active() && passes[r]) words = dropout.Words(at.rows[r], key, at.head);
#pragma unroll
        for (int i = 0; i < 2; ++i) {
          float& ds = s[n][2 * r + i];
          if (!passes[r] || key + i >= g.tokens) {
            ds = 0.0f;
            continue;
          }
          const float p = __expf(at.key_mask.Score(ds * scale, false, key + i) - lse[r]);
          const float factor = dropout.Active() ? dropout.Factor(words, key + i) : 1.0f;
          ds = p * (dp[n][2 * r + i] * factor - dlt[r]);
        }
      }
    }
    AccumulateTimes<kCode, D>(dq, s, keys, l);
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    if (at.rows[r] >= g.tokens) continue;
    StoreRow<kCode, D>(grad_qkv + g.Qkv(at.b, at.h, at.rows[r], 0, D), dq, r, scale, l);
  }
}

// 0, or why these kernels cannot run here: a GPU before sm_80, or a misaligned tensor.
int Runnable(std::initializer_list<const void*> tensors) {
  int device = 0, major = 0;
  if (const cudaError_t error = cudaGetDevice(&device)) return static_cast<int>(error);
  if (const cudaError_t error =
          cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device)) {
    return static_cast<int>(error);
  }
  if (major < 8) return CCT_CUDA_NEEDS_SM80;
  for (const void* tensor : tensors)
    if (reinterpret_cast<uintptr_t>(tensor) % 16 != 0) return CCT_CUDA_MISALIGNED;
  return 0;
}

}  // namespace

extern "C" int cct_cuda_attention_forward_16bit(int dtype, const void* qkv, const uint8_t* mask,
                                                void* out, float* logsumexp, int64_t batch,
                                                int64_t tokens, int64_t heads, int64_t head_dim,
                                                float scale, float keep, uint32_t seed0,
                                                uint32_t seed1, void* stream) {
  if (batch == 0 || tokens == 0) return 0;
  if (const int code = Runnable({qkv})) return code;
  return cct_cuda::ForDtype<CCT_CUDA_BFLOAT16, CCT_CUDA_FLOAT16>(dtype, [&](auto code) {
    return cct_cuda::ForHeadDim(head_dim, [&](auto d) {
      constexpr int kCode = decltype(code)::value, D = decltype(d)::value;
      ForwardKernel<kCode, D><<<cct_cuda::RowBlocks(batch, tokens, heads, kBlockRows), kThreads, 0,
                                static_cast<cudaStream_t>(stream)>>>(
          static_cast<const uint16_t*>(qkv), mask, static_cast<uint16_t*>(out), logsumexp,
          Geometry{tokens, heads, 3 * heads * D}, scale, Dropout::Of(keep, seed0, seed1));
      return static_cast<int>(cudaGetLastError());
    });
  });
}

extern "C" int cct_cuda_attention_backward_16bit(int dtype, const void* qkv, const uint8_t* mask,
                                                 const void* out, const float* logsumexp,
                                                 const void* grad_out, void* grad_qkv, float* delta,
                                                 int64_t batch, int64_t tokens, int64_t heads,
                                                 int64_t head_dim, float scale, float keep,
                                                 uint32_t seed0, uint32_t seed1, void* stream) {
  if (batch == 0 || tokens == 0) return 0;
  if (const int code = Runnable({qkv, grad_out})) return code;
  return cct_cuda::ForDtype<CCT_CUDA_BFLOAT16, CCT_CUDA_FLOAT16>(dtype, [&](auto code) {
    return cct_cuda::ForHeadDim(head_dim, [&](auto d) {
      constexpr int kCode = decltype(code)::value, D = decltype(d)::value;
      const auto s = static_cast<cudaStream_t>(stream);
      const Geometry g{tokens, heads, 3 * heads * D};
      const Dropout dropout = Dropout::Of(keep, seed0, seed1);
      const auto* packed = static_cast<const uint16_t*>(qkv);
      const auto* grads = static_cast<const uint16_t*>(grad_out);
      auto* grad = static_cast<uint16_t*>(grad_qkv);
      const int64_t rows = batch * heads * tokens;
      DeltaKernel<kCode, D><<<static_cast<unsigned>((rows + 255) / 256), 256, 0, s>>>(
          static_cast<const uint16_t*>(out), grads, delta, g, rows);
      const dim3 grid = cct_cuda::RowBlocks(batch, tokens, heads, kBlockRows);
      KeyGradKernel<kCode, D><<<grid, kThreads, 0, s>>>(packed, mask, grads, logsumexp, delta, grad,
                                                        g, scale, dropout);
      QueryGradKernel<kCode, D><<<grid, kThreads, 0, s>>>(packed, mask, grads, logsumexp, delta,
                                                          grad, g, scale, dropout);
      return static_cast<int>(cudaGetLastError());
    });
  });
}
