// The CPU kernels, written once over GCC vector types and compiled once per instruction set
// (CMake builds this file with -mavx512f..., -mavx2 -mfma and no flags, each into its own
// namespace CCT_ISA; dispatch.cc picks one at run time).
//
// Attention works on one (batch, head) at a time: K and V of that head are packed into
// contiguous, zero-padded panels, then R query rows at a time get their scores against all
// keys (an R x tokens tile that stays in cache), an exact softmax, and the weighted sum of V.
// The full tokens x tokens score matrix never exists. The backward recomputes the probabilities
// from the saved log-sum-exp (as FlashAttention does) and accumulates dK and dV per head, so
// threads never write the same memory. With AVX512_BF16, bfloat16 scores and weighted sums use
// vdpbf16ps (bf16 pairs, float32 accumulation).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels.h"

#if defined(__AVX512BF16__)
#include <immintrin.h>
#endif

#ifndef CCT_ISA
#error "compile with -DCCT_ISA=<namespace>"
#endif

namespace cct_kernels {
namespace CCT_ISA {
namespace {

#if defined(__AVX512F__)
constexpr int W = 16;    // floats per vector
constexpr int COLS = 4;  // vectors per micro-kernel row: R x COLS accumulators
#elif defined(__AVX2__)
constexpr int W = 8;
constexpr int COLS = 2;
#else
constexpr int W = 4;
constexpr int COLS = 2;
#endif
constexpr int R = 4;  // query rows per micro-kernel

typedef float vf __attribute__((vector_size(W * sizeof(float))));
typedef int32_t vi __attribute__((vector_size(W * sizeof(int32_t))));

inline vf Load(const float* p) {
  vf v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void Store(float* p, vf v) { std::memcpy(p, &v, sizeof v); }
inline vf Splat(float x) { return vf{} + x; }

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
  std::memcpy(&power, &bits, sizeof power);
  return y * power;
}

inline int64_t RoundUp(int64_t n, int64_t multiple) { return (n + multiple - 1) / multiple * multiple; }

inline float ToFloat(float x) { return x; }
inline float ToFloat(uint16_t x) {
  const uint32_t bits = static_cast<uint32_t>(x) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}
inline void FromFloat(float x, float* out) { *out = x; }
inline void FromFloat(float x, uint16_t* out) {  // round to nearest even, as Eigen does
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u) {
    *out = static_cast<uint16_t>((bits >> 16) | 0x40);  // quiet NaN
    return;
  }
  bits += 0x7fffu + ((bits >> 16) & 1u);
  *out = static_cast<uint16_t>(bits >> 16);
}

// out[r][col0 + i] (+)= sum_k a[r * lda + k] * b[k * ldb + col0 + i] for r < R, i < C * W.
template <int C>
void RowsTimesPanel(const float* a, int64_t lda, int64_t depth, const float* b, int64_t ldb,
                    int64_t col0, float* out, int64_t ldo, bool accumulate) {
  vf acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = accumulate ? Load(out + r * ldo + col0 + c * W) : vf{};
  for (int64_t k = 0; k < depth; ++k) {
    vf panel[C];
    for (int c = 0; c < C; ++c) panel[c] = Load(b + k * ldb + col0 + c * W);
    for (int r = 0; r < R; ++r) {
      const vf scalar = Splat(a[r * lda + k]);
      for (int c = 0; c < C; ++c) acc[r][c] += scalar * panel[c];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) Store(out + r * ldo + col0 + c * W, acc[r][c]);
}

// R rows of a (R x depth) times b (depth x cols), cols a multiple of W.
void RowsTimes(const float* a, int64_t lda, int64_t depth, const float* b, int64_t ldb,
               int64_t cols, float* out, int64_t ldo, bool accumulate = false) {
  int64_t col = 0;
  for (; col + COLS * W <= cols; col += COLS * W)
    RowsTimesPanel<COLS>(a, lda, depth, b, ldb, col, out, ldo, accumulate);
  for (; col < cols; col += W) RowsTimesPanel<1>(a, lda, depth, b, ldb, col, out, ldo, accumulate);
}

// rows x cols -> cols x rows.
void Transpose(const float* in, int64_t rows, int64_t cols, float* out) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) out[c * rows + r] = in[r * cols + c];
}

// The geometry of one head's panels: keys padded to a whole number of micro-kernel panels,
// head_dim to whole vectors. Padding is zero, so it adds nothing to any sum.
struct Head {
  explicit Head(const AttentionShape& s)
      : shape(s),
        keys(RoundUp(s.tokens, COLS * W)),
        dim(RoundUp(s.head_dim, W)),
        row_stride(3 * s.heads * s.head_dim) {}
  // Element (token, part, dim) of head `h` in batch `b`; part 0, 1, 2 = q, k, v.
  int64_t Offset(int64_t b, int64_t h, int64_t token, int part) const {
    return (b * shape.tokens + token) * row_stride + (part * shape.heads + h) * shape.head_dim;
  }
  int64_t OutOffset(int64_t b, int64_t h, int64_t token) const {
    return ((b * shape.tokens + token) * shape.heads + h) * shape.head_dim;
  }
  AttentionShape shape;
  int64_t keys, dim, row_stride;
};

// part of (b, h) as a (keys x dim) row-major panel, or its (dim x keys) transpose.
template <typename T>
void PackRows(const T* qkv, const Head& g, int64_t b, int64_t h, int part, float* panel) {
  std::fill(panel, panel + g.keys * g.dim, 0.0f);
  for (int64_t j = 0; j < g.shape.tokens; ++j) {
    const T* src = qkv + g.Offset(b, h, j, part);
    for (int64_t d = 0; d < g.shape.head_dim; ++d) panel[j * g.dim + d] = ToFloat(src[d]);
  }
}
template <typename T>
void PackColumns(const T* qkv, const Head& g, int64_t b, int64_t h, int part, float* panel) {
  std::fill(panel, panel + g.keys * g.dim, 0.0f);
  for (int64_t j = 0; j < g.shape.tokens; ++j) {
    const T* src = qkv + g.Offset(b, h, j, part);
    for (int64_t d = 0; d < g.shape.head_dim; ++d) panel[d * g.keys + j] = ToFloat(src[d]);
  }
}
// R rows starting at token i0 of a (tokens, heads, head_dim)-strided tensor into R x dim.
template <typename T>
void PackQueryRows(const T* base, int64_t stride, const Head& g, int64_t i0, float* rows) {
  std::fill(rows, rows + R * g.dim, 0.0f);
  for (int r = 0; r < R && i0 + r < g.shape.tokens; ++r) {
    const T* src = base + (i0 + r) * stride;
    for (int64_t d = 0; d < g.shape.head_dim; ++d) rows[r * g.dim + d] = ToFloat(src[d]);
  }
}

// Scaled scores (R x keys) -> probabilities in place; padding keys get 0. Returns log-sum-exps.
void Softmax(float* scores, const Head& g, float* row_logsumexp) {
  const int64_t n = g.shape.tokens;
  for (int r = 0; r < R; ++r) {
    float* s = scores + r * g.keys;
    float max = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < n; ++j) {
      s[j] *= g.shape.scale;
      max = std::max(max, s[j]);
    }
    vf sum = vf{};
    int64_t j = 0;
    for (; j + W <= n; j += W) {
      const vf p = Exp(Load(s + j) - max);
      Store(s + j, p);
      sum += p;
    }
    float total = 0.0f;
    for (int i = 0; i < W; ++i) total += sum[i];
    for (; j < n; ++j) {
      s[j] = std::exp(s[j] - max);
      total += s[j];
    }
    std::fill(s + n, s + g.keys, 0.0f);
    const float inverse = 1.0f / total;
    for (int64_t k = 0; k < n; ++k) s[k] *= inverse;
    row_logsumexp[r] = max + std::log(total);
  }
}

struct Scratch {
  std::vector<float> keys, values, rows, rows2, scores, scores2, transposed, grad_k, grad_v,
      out_rows;
  static Scratch& ForThread() {
    thread_local Scratch scratch;
    return scratch;
  }
};

template <typename T>
void AttentionForwardHead(const T* qkv, T* out, float* logsumexp, const Head& g, int64_t b,
                          int64_t h) {
  Scratch& m = Scratch::ForThread();
  m.keys.resize(g.keys * g.dim);
  m.values.resize(g.keys * g.dim);
  m.rows.resize(R * g.dim);
  m.scores.resize(R * g.keys);
  m.out_rows.resize(R * g.dim);
  PackColumns(qkv, g, b, h, 1, m.keys.data());  // K^T: dim x keys
  PackRows(qkv, g, b, h, 2, m.values.data());   // V: keys x dim
  float row_lse[R];
  for (int64_t i0 = 0; i0 < g.shape.tokens; i0 += R) {
    PackQueryRows(qkv + g.Offset(b, h, 0, 0), g.row_stride, g, i0, m.rows.data());
    RowsTimes(m.rows.data(), g.dim, g.dim, m.keys.data(), g.keys, g.keys, m.scores.data(),
              g.keys);
    Softmax(m.scores.data(), g, row_lse);
    RowsTimes(m.scores.data(), g.keys, g.shape.tokens, m.values.data(), g.dim, g.dim,
              m.out_rows.data(), g.dim);
    for (int r = 0; r < R && i0 + r < g.shape.tokens; ++r) {
      T* dst = out + g.OutOffset(b, h, i0 + r);
      for (int64_t d = 0; d < g.shape.head_dim; ++d) FromFloat(m.out_rows[r * g.dim + d], dst + d);
      logsumexp[(b * g.shape.heads + h) * g.shape.tokens + i0 + r] = row_lse[r];
    }
  }
}

#if defined(__AVX512BF16__)
// bfloat16 inputs on AVX512_BF16: both products as vdpbf16ps over bf16 pairs.
// Panels interleave pairs along the reduction axis: element (k, col) of a (depth x cols) panel
// sits at ((k / 2) * cols + col) * 2 + k % 2, so one 512-bit load holds 16 columns x 2 k's.
constexpr int BW = 16;  // float lanes per vdpbf16ps

struct BfScratch {
  std::vector<uint16_t> keys, values, rows, probabilities;
  std::vector<float> scores, out_rows;
  static BfScratch& ForThread() {
    thread_local BfScratch scratch;
    return scratch;
  }
};

// out[r][col0 + i] = sum_k a(r, k) b(k, col0 + i); a as R rows of `depth` bf16 (depth even),
// b pair-interleaved (depth x cols).
template <int C>
void BfRowsTimesPanel(const uint16_t* a, int64_t lda, int64_t depth, const uint16_t* b,
                      int64_t cols, int64_t col0, float* out, int64_t ldo) {
  __m512 acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps();
  for (int64_t k = 0; k < depth; k += 2) {
    __m512bh panel[C];
    for (int c = 0; c < C; ++c)
      panel[c] = (__m512bh)_mm512_loadu_si512(b + ((k / 2) * cols + col0 + c * BW) * 2);
    for (int r = 0; r < R; ++r) {
      uint32_t pair;
      std::memcpy(&pair, a + r * lda + k, sizeof pair);
      const __m512bh scalar = (__m512bh)_mm512_set1_epi32(static_cast<int>(pair));
      for (int c = 0; c < C; ++c) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], scalar, panel[c]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) _mm512_storeu_ps(out + r * ldo + col0 + c * BW, acc[r][c]);
}

void BfRowsTimes(const uint16_t* a, int64_t lda, int64_t depth, const uint16_t* b, int64_t cols,
                 float* out, int64_t ldo) {
  int64_t col = 0;
  for (; col + 4 * BW <= cols; col += 4 * BW)
    BfRowsTimesPanel<4>(a, lda, depth, b, cols, col, out, ldo);
  for (; col < cols; col += BW) BfRowsTimesPanel<1>(a, lda, depth, b, cols, col, out, ldo);
}

inline int64_t Interleaved(int64_t k, int64_t col, int64_t cols) {
  return ((k / 2) * cols + col) * 2 + (k & 1);
}

void AttentionForwardHeadBf16(const uint16_t* qkv, uint16_t* out, float* logsumexp, const Head& g,
                              int64_t b, int64_t h) {
  BfScratch& m = BfScratch::ForThread();
  const int64_t dim = RoundUp(g.shape.head_dim, BW);  // even, whole vectors
  const int64_t keys = g.keys;                        // a multiple of 64
  m.keys.assign(dim * keys, 0);                       // K^T: (dim x keys), pairs along dim
  m.values.assign(keys * dim, 0);                     // V: (keys x dim), pairs along keys
  for (int64_t j = 0; j < g.shape.tokens; ++j) {
    const uint16_t* k = qkv + g.Offset(b, h, j, 1);
    const uint16_t* v = qkv + g.Offset(b, h, j, 2);
    for (int64_t d = 0; d < g.shape.head_dim; ++d) {
      m.keys[Interleaved(d, j, keys)] = k[d];
      m.values[Interleaved(j, d, dim)] = v[d];
    }
  }
  m.rows.resize(R * dim);
  m.scores.resize(R * keys);
  m.probabilities.resize(R * keys);
  m.out_rows.resize(R * dim);
  float row_lse[R];
  for (int64_t i0 = 0; i0 < g.shape.tokens; i0 += R) {
    std::fill(m.rows.begin(), m.rows.end(), 0);
    for (int r = 0; r < R && i0 + r < g.shape.tokens; ++r)
      std::memcpy(&m.rows[r * dim], qkv + g.Offset(b, h, i0 + r, 0),
                  g.shape.head_dim * sizeof(uint16_t));
    BfRowsTimes(m.rows.data(), dim, dim, m.keys.data(), keys, m.scores.data(), keys);
    Softmax(m.scores.data(), g, row_lse);
    for (int64_t i = 0; i < R * keys; ++i) FromFloat(m.scores[i], &m.probabilities[i]);
    BfRowsTimes(m.probabilities.data(), keys, keys, m.values.data(), dim, m.out_rows.data(), dim);
    for (int r = 0; r < R && i0 + r < g.shape.tokens; ++r) {
      uint16_t* dst = out + g.OutOffset(b, h, i0 + r);
      for (int64_t d = 0; d < g.shape.head_dim; ++d) FromFloat(m.out_rows[r * dim + d], dst + d);
      logsumexp[(b * g.shape.heads + h) * g.shape.tokens + i0 + r] = row_lse[r];
    }
  }
}
#endif

template <typename T>
void AttentionBackwardHead(const T* qkv, const T* out, const float* logsumexp, const T* grad_out,
                           T* grad_qkv, const Head& g, int64_t b, int64_t h) {
  Scratch& m = Scratch::ForThread();
  const int64_t panel = g.keys * g.dim;
  m.keys.resize(2 * panel);    // K (keys x dim), then K^T
  m.values.resize(panel);      // V^T (dim x keys)
  m.grad_k.assign(panel, 0.0f);
  m.grad_v.assign(panel, 0.0f);
  m.rows.resize(2 * R * g.dim);  // Q rows, then dO rows
  m.scores.resize(R * g.keys);   // P
  m.scores2.resize(R * g.keys);  // dP, then dS
  m.transposed.resize(g.keys * R);
  m.out_rows.resize(R * g.dim);  // O rows, then dQ rows
  float* k_rows = m.keys.data();
  float* k_columns = m.keys.data() + panel;
  PackRows(qkv, g, b, h, 1, k_rows);
  PackColumns(qkv, g, b, h, 1, k_columns);
  PackColumns(qkv, g, b, h, 2, m.values.data());
  float* q = m.rows.data();
  float* d_out = m.rows.data() + R * g.dim;
  const float* lse = logsumexp + (b * g.shape.heads + h) * g.shape.tokens;
  const int64_t out_stride = g.shape.heads * g.shape.head_dim;
  for (int64_t i0 = 0; i0 < g.shape.tokens; i0 += R) {
    const int rows = static_cast<int>(std::min<int64_t>(R, g.shape.tokens - i0));
    PackQueryRows(qkv + g.Offset(b, h, 0, 0), g.row_stride, g, i0, q);
    PackQueryRows(grad_out + g.OutOffset(b, h, 0), out_stride, g, i0, d_out);
    PackQueryRows(out + g.OutOffset(b, h, 0), out_stride, g, i0, m.out_rows.data());
    float delta[R] = {};  // rowsum(dO * O)
    for (int r = 0; r < rows; ++r)
      for (int64_t d = 0; d < g.shape.head_dim; ++d)
        delta[r] += d_out[r * g.dim + d] * m.out_rows[r * g.dim + d];
    RowsTimes(q, g.dim, g.dim, k_columns, g.keys, g.keys, m.scores.data(), g.keys);
    RowsTimes(d_out, g.dim, g.dim, m.values.data(), g.keys, g.keys, m.scores2.data(), g.keys);
    for (int r = 0; r < R; ++r) {
      float* p = m.scores.data() + r * g.keys;
      float* ds = m.scores2.data() + r * g.keys;
      if (r >= rows) {
        std::fill(p, p + g.keys, 0.0f);
        std::fill(ds, ds + g.keys, 0.0f);
        continue;
      }
      for (int64_t j = 0; j < g.keys; ++j) {
        const float prob = j < g.shape.tokens ? std::exp(p[j] * g.shape.scale - lse[i0 + r]) : 0.0f;
        p[j] = prob;
        ds[j] = prob * (ds[j] - delta[r]) * g.shape.scale;
      }
    }
    // dQ = dS K; dV += P^T dO; dK += dS^T Q.
    RowsTimes(m.scores2.data(), g.keys, g.shape.tokens, k_rows, g.dim, g.dim, m.out_rows.data(),
              g.dim);
    for (int r = 0; r < rows; ++r) {
      T* dst = grad_qkv + g.Offset(b, h, i0 + r, 0);
      for (int64_t d = 0; d < g.shape.head_dim; ++d) FromFloat(m.out_rows[r * g.dim + d], dst + d);
    }
    Transpose(m.scores.data(), R, g.keys, m.transposed.data());
    for (int64_t j = 0; j < g.keys; j += R)
      RowsTimes(m.transposed.data() + j * R, R, R, d_out, g.dim, g.dim, m.grad_v.data() + j * g.dim,
                g.dim, true);
    Transpose(m.scores2.data(), R, g.keys, m.transposed.data());
    for (int64_t j = 0; j < g.keys; j += R)
      RowsTimes(m.transposed.data() + j * R, R, R, q, g.dim, g.dim, m.grad_k.data() + j * g.dim,
                g.dim, true);
  }
  for (int64_t j = 0; j < g.shape.tokens; ++j) {
    T* dk = grad_qkv + g.Offset(b, h, j, 1);
    T* dv = grad_qkv + g.Offset(b, h, j, 2);
    for (int64_t d = 0; d < g.shape.head_dim; ++d) {
      FromFloat(m.grad_k[j * g.dim + d], dk + d);
      FromFloat(m.grad_v[j * g.dim + d], dv + d);
    }
  }
}

// Cycles per (batch, head) task, for the thread pool's splitting.
int64_t HeadCost(const AttentionShape& s) {
  return std::max<int64_t>(1, 4 * s.tokens * s.tokens * s.head_dim / (2 * W));
}

template <typename Body>
void ForEachHead(const AttentionShape& s, const ParallelFor& parallel_for, int64_t cost,
                 Body body) {
  parallel_for(s.batch * s.heads, cost, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) body(task / s.heads, task % s.heads);
  });
}

}  // namespace

void AttentionForward(const float* qkv, float* out, float* logsumexp, const AttentionShape& shape,
                      const ParallelFor& parallel_for) {
  const Head g(shape);
  ForEachHead(shape, parallel_for, HeadCost(shape),
              [&](int64_t b, int64_t h) { AttentionForwardHead(qkv, out, logsumexp, g, b, h); });
}

void AttentionForward(const uint16_t* qkv, uint16_t* out, float* logsumexp,
                      const AttentionShape& shape, const ParallelFor& parallel_for) {
  const Head g(shape);
  ForEachHead(shape, parallel_for, HeadCost(shape), [&](int64_t b, int64_t h) {
#if defined(__AVX512BF16__)
    AttentionForwardHeadBf16(qkv, out, logsumexp, g, b, h);
#else
    AttentionForwardHead(qkv, out, logsumexp, g, b, h);
#endif
  });
}

void AttentionBackward(const float* qkv, const float* out, const float* logsumexp,
                       const float* grad_out, float* grad_qkv, const AttentionShape& shape,
                       const ParallelFor& parallel_for) {
  const Head g(shape);
  ForEachHead(shape, parallel_for, 3 * HeadCost(shape), [&](int64_t b, int64_t h) {
    AttentionBackwardHead(qkv, out, logsumexp, grad_out, grad_qkv, g, b, h);
  });
}

void AttentionBackward(const uint16_t* qkv, const uint16_t* out, const float* logsumexp,
                       const uint16_t* grad_out, uint16_t* grad_qkv, const AttentionShape& shape,
                       const ParallelFor& parallel_for) {
  const Head g(shape);
  ForEachHead(shape, parallel_for, 3 * HeadCost(shape), [&](int64_t b, int64_t h) {
    AttentionBackwardHead(qkv, out, logsumexp, grad_out, grad_qkv, g, b, h);
  });
}

void SequencePoolForward(const float* tokens, const float* kernel, float bias, float* out,
                         float* weights, const PoolShape& s, const ParallelFor& parallel_for) {
  parallel_for(s.batch, 4 * s.tokens * s.dim, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const float* t = tokens + b * s.tokens * s.dim;
      float* w = weights + b * s.tokens;
      float max = -std::numeric_limits<float>::infinity();
      for (int64_t n = 0; n < s.tokens; ++n) {
        float score = bias;
        for (int64_t d = 0; d < s.dim; ++d) score += t[n * s.dim + d] * kernel[d];
        w[n] = score;
        max = std::max(max, score);
      }
      float total = 0.0f;
      for (int64_t n = 0; n < s.tokens; ++n) total += (w[n] = std::exp(w[n] - max));
      float* o = out + b * s.dim;
      std::fill(o, o + s.dim, 0.0f);
      for (int64_t n = 0; n < s.tokens; ++n) {
        w[n] /= total;
        for (int64_t d = 0; d < s.dim; ++d) o[d] += w[n] * t[n * s.dim + d];
      }
    }
  });
}

void SequencePoolBackward(const float* tokens, const float* kernel, const float* weights,
                          const float* grad_out, float* grad_tokens, float* grad_kernel,
                          float* grad_bias, const PoolShape& s, const ParallelFor& parallel_for) {
  // With a_n = g . t_n and abar = sum_n w_n a_n: dscore_n = w_n (a_n - abar),
  // dt_n = w_n g + dscore_n kernel, dkernel = sum dscore_n t_n, dbias = sum dscore_n.
  std::vector<float> score_grads(s.batch * s.tokens);
  parallel_for(s.batch, 6 * s.tokens * s.dim, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const float* t = tokens + b * s.tokens * s.dim;
      const float* w = weights + b * s.tokens;
      const float* g = grad_out + b * s.dim;
      float* ds = score_grads.data() + b * s.tokens;
      float mean = 0.0f;
      for (int64_t n = 0; n < s.tokens; ++n) {
        float a = 0.0f;
        for (int64_t d = 0; d < s.dim; ++d) a += g[d] * t[n * s.dim + d];
        ds[n] = a;
        mean += w[n] * a;
      }
      for (int64_t n = 0; n < s.tokens; ++n) {
        ds[n] = w[n] * (ds[n] - mean);
        float* dt = grad_tokens + (b * s.tokens + n) * s.dim;
        for (int64_t d = 0; d < s.dim; ++d) dt[d] = w[n] * g[d] + ds[n] * kernel[d];
      }
    }
  });
  parallel_for(s.dim, 2 * s.batch * s.tokens, [&](int64_t begin, int64_t end) {
    for (int64_t d = begin; d < end; ++d) {
      float sum = 0.0f;
      for (int64_t i = 0; i < s.batch * s.tokens; ++i) sum += score_grads[i] * tokens[i * s.dim + d];
      grad_kernel[d] = sum;
    }
  });
  float bias = 0.0f;
  for (float ds : score_grads) bias += ds;
  *grad_bias = bias;
}

}  // namespace CCT_ISA
}  // namespace cct_kernels
