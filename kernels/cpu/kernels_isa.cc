// The CPU kernels, written once over GCC vector types and compiled once per instruction set
// (CMake builds this file with -mavx512f..., -mavx2 -mfma and no flags, each into its own
// namespace CCT_ISA; dispatch.cc picks one at run time).
//
// Attention works on one (batch, head) at a time, a block of queries after another: the
// block's scores against all keys (a tokens x block tile that stays in cache), an exact
// softmax, and the weighted sum of V. The full tokens x tokens score matrix never exists. The
// backward recomputes the probabilities from the saved log-sum-exp (as FlashAttention does) and
// accumulates dK and dV per head, so threads never write the same memory. With AVX512_BF16,
// every product of the bfloat16 forward and backward is vdpbf16ps (bf16 pairs, float32
// accumulation); without it, bfloat16 heads run the float32 code on float copies.
//
// Attention dropout (keep < 1) scales each probability by 0 or 1 / keep after the softmax's
// denominators are taken, from the counter-based Philox of kernels/common/philox.h, computed
// 16 (AVX-512) queries x 4 keys at a time; the backward regenerates the same factors, so no
// mask is stored. A key-padding mask (BlockMask) is applied to each block's scores, forward
// and backward.
#include <math.h>
#include <string.h>

#include "../common/philox.h"
#include "kernels.h"
#include "vectors.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace cct_kernels {
namespace CCT_ISA {
namespace {

// The float32 micro-kernel keeps R x COLS accumulators in registers, with COLS vectors of the
// right-hand panel and one broadcast: 24 + 4 + 1 of AVX-512's 32 registers, 12 + 2 + 1 of
// AVX2's 16. Each panel load serves R rows, so the panels streamed from L2 (K and V rows read
// straight from qkv) cost less per product the more rows there are (R = 6 against 4: the
// float32 attention forward 1.12x, backward 1.07x on AVX-512). QB queries make one block of the
// attention (ForwardHead); dK and dV are reduced over a block at a time, so a larger QB touches
// their rows fewer times.
#if defined(__AVX512F__)
constexpr int COLS = 4;
constexpr int R = 6;
constexpr int QB = 64;
#else
constexpr int COLS = 2;
constexpr int R = 6;
constexpr int QB = 32;
#endif
static_assert(QB % (COLS * W) == 0, "a block of queries is whole micro-kernel panels");
// vu's bits as 64-bit lanes: element 2i of a vu in the low half of lane i, 2i + 1 in the high.
typedef uint64_t vpairs __attribute__((vector_size(W * sizeof(uint32_t))));

// The products of the low halves of a's 64-bit lanes with m (< 2^32): the widening multiply of
// even 32-bit lanes, pmuludq. Compilers emit it for the masked product themselves, except with
// AVX-512, where they take the 64-bit vpmullq (15 cycles' latency on Intel).
inline vpairs MultiplyLowHalves(vpairs a, uint32_t m) {
#if defined(__AVX512F__)
  return reinterpret_cast<vpairs>(
      _mm512_mul_epu32(reinterpret_cast<__m512i>(a), _mm512_set1_epi64(static_cast<int64_t>(m))));
#else
  return (a & 0xFFFFFFFFull) * static_cast<uint64_t>(m);
#endif
}

// The high and low words of m * x, lane by lane: the even lanes' products, then the odd lanes'
// (shifted down to the low halves), where widening x to 64-bit lanes took a 64-bit multiply
// and two packs per half.
inline void MultiplyHighLow(uint32_t m, vu x, vu* high, vu* low) {
  const vpairs pairs = reinterpret_cast<vpairs>(x);
  const vpairs even = MultiplyLowHalves(pairs, m), odd = MultiplyLowHalves(pairs >> 32, m);
  *high = reinterpret_cast<vu>((even >> 32) | (odd & ~0xFFFFFFFFull));
  *low = x * m;
}

// Dropout of one (batch, head)'s probabilities, or none (active false).
struct HeadDropout {
  bool active = false;
  uint32_t threshold = 0, seed0 = 0, seed1 = 0, head = 0;  // head: batch * heads + h
  float scale = 1.0f;                                      // 1 / keep

  // The factors (0 or 1 / keep) of keys 4 * key4 .. 4 * key4 + 3 for queries query0 ..
  // query0 + W - 1: Philox over W counters at once, one word per key.
  void Factors(int64_t query0, int64_t key4, vf factors[4]) const {
    vu c0, c1 = vu{} + static_cast<uint32_t>(key4), c2 = vu{} + head, c3 = vu{};
    for (int lane = 0; lane < W; ++lane) c0[lane] = static_cast<uint32_t>(query0 + lane);
    uint32_t k0 = seed0, k1 = seed1;
    for (int round = 0; round < cct_philox::kRounds; ++round) {
      vu high0, low0, high1, low1;
      MultiplyHighLow(cct_philox::kMultiplier0, c0, &high0, &low0);
      MultiplyHighLow(cct_philox::kMultiplier1, c2, &high1, &low1);
      const vu next0 = high1 ^ c1 ^ k0, next2 = high0 ^ c3 ^ k1;
      c1 = low1;
      c3 = low0;
      c0 = next0;
      c2 = next2;
      k0 += cct_philox::kWeyl0;
      k1 += cct_philox::kWeyl1;
    }
    const vu words[4] = {c0, c1, c2, c3};
    const vu threshold_vector = vu{} + threshold;
    for (int k = 0; k < 4; ++k) factors[k] = words[k] < threshold_vector ? Splat(scale) : vf{};
  }
};

HeadDropout DropoutOf(const AttentionShape& s, int64_t b, int64_t h) {
  HeadDropout dropout;
  if (s.keep >= 1.0f) return dropout;
  dropout.active = true;
  dropout.threshold = cct_philox::KeepThreshold(s.keep);
  dropout.seed0 = s.seed0;
  dropout.seed1 = s.seed1;
  dropout.head = static_cast<uint32_t>(b * s.heads + h);
  dropout.scale = 1.0f / s.keep;
  return dropout;
}

// The key-padding mask of one block of queries (AttentionShape::mask): a padded query's scores
// all become 0, so that it attends uniformly, and a real query's scores against padded keys
// -inf; Keep then zeroes what exp(-inf) leaves (Exp clamps its argument at -87).
struct BlockMask {
  const uint8_t* real = nullptr;      // the batch row's tokens, nonzero where real; null: no mask
  alignas(64) float padded[QB] = {};  // 1 where the block's query is padded (0 past the block)

  BlockMask(const uint8_t* row, int64_t i0, int64_t count) : real(row) {
    if (row == nullptr) return;
    for (int64_t i = 0; i < count; ++i) padded[i] = row[i0 + i] == 0 ? 1.0f : 0.0f;
  }
  // Scores (keys down, QB queries across, row stride QB) masked in place.
  void Scores(float* st, int64_t tokens) const {
    if (real == nullptr) return;
    const vf minus_infinity = Splat(-INFINITY), zero = vf{};
    for (int64_t j = 0; j < tokens; ++j) {
      for (int c = 0; c < QB / W; ++c) {
        const vf s = real[j] ? Load(st + j * QB + c * W) : minus_infinity;
        Store(st + j * QB + c * W, Load(padded + c * W) > zero ? zero : s);
      }
    }
  }
  // With a mask: the factor of the probabilities of key j for queries c * W ..: 0 for a real
  // query and a padded key, else 1.
  vf Keep(int64_t j, int c) const { return real[j] ? Splat(1.0f) : Load(padded + c * W); }
  // With a mask: 1 for real queries, 0 for padded ones, whose scores take no gradient.
  vf RealQueries(int c) const { return Splat(1.0f) - Load(padded + c * W); }
};

const uint8_t* MaskRow(const AttentionShape& s, int64_t b) {
  return s.mask == nullptr ? nullptr : s.mask + b * s.tokens;
}

// out[r][col0 + i] (+)= sum_k a[r * a_row + k * a_depth] * b[k * ldb + col0 + i]
// for r < ROWS, i < C * W: ROWS x C accumulators stay in registers.
template <int ROWS, int C>
void RowsTimesPanel(const float* a, int64_t a_row, int64_t a_depth, int64_t depth, const float* b,
                    int64_t ldb, int64_t col0, float* out, int64_t ldo, bool accumulate) {
  vf acc[ROWS][C];
  for (int r = 0; r < ROWS; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = accumulate ? Load(out + r * ldo + col0 + c * W) : vf{};
  for (int64_t k = 0; k < depth; ++k) {
    vf panel[C];
    for (int c = 0; c < C; ++c) panel[c] = Load(b + k * ldb + col0 + c * W);
    const float* column = a + k * a_depth;
    for (int r = 0; r < ROWS; ++r) {
      const vf scalar = Splat(column[r * a_row]);
      for (int c = 0; c < C; ++c) acc[r][c] += scalar * panel[c];
    }
  }
  for (int r = 0; r < ROWS; ++r)
    for (int c = 0; c < C; ++c) Store(out + r * ldo + col0 + c * W, acc[r][c]);
}

template <int ROWS>
void PanelsOfRows(const float* a, int64_t a_row, int64_t a_depth, int64_t depth, const float* b,
                  int64_t ldb, int64_t cols, float* out, int64_t ldo, bool accumulate) {
  int64_t col = 0;
  for (; col + COLS * W <= cols; col += COLS * W)
    RowsTimesPanel<ROWS, COLS>(a, a_row, a_depth, depth, b, ldb, col, out, ldo, accumulate);
  for (; col < cols; col += W)
    RowsTimesPanel<ROWS, 1>(a, a_row, a_depth, depth, b, ldb, col, out, ldo, accumulate);
}

// The rows (< R) that Product's R-row micro-kernels leave, as one micro-kernel of that many
// rows: a block's last few queries run as fast as the others.
template <int ROWS>
void LastRows(int64_t rows, const float* a, int64_t a_row, int64_t a_depth, int64_t depth,
              const float* b, int64_t ldb, int64_t cols, float* out, int64_t ldo, bool accumulate) {
  if constexpr (ROWS > 0) {
    if (rows == ROWS)
      return PanelsOfRows<ROWS>(a, a_row, a_depth, depth, b, ldb, cols, out, ldo, accumulate);
    LastRows<ROWS - 1>(rows, a, a_row, a_depth, depth, b, ldb, cols, out, ldo, accumulate);
  }
}

// out (rows x cols) (+)= A (rows x depth, element (r, k) at a[r * a_row + k * a_depth]) times
// b (depth x cols); cols a multiple of W.
void Product(const float* a, int64_t a_row, int64_t a_depth, int64_t rows, int64_t depth,
             const float* b, int64_t ldb, int64_t cols, float* out, int64_t ldo,
             bool accumulate = false) {
  int64_t r = 0;
  for (; r + R <= rows; r += R)
    PanelsOfRows<R>(a + r * a_row, a_row, a_depth, depth, b, ldb, cols, out + r * ldo, ldo,
                    accumulate);
  LastRows<R - 1>(rows - r, a + r * a_row, a_row, a_depth, depth, b, ldb, cols, out + r * ldo, ldo,
                  accumulate);
}

// Where one head's rows sit in qkv and out.
struct Head {
  explicit Head(const AttentionShape& s) : shape(s), row_stride(3 * s.heads * s.head_dim) {}
  // Element (token, part, dim) of head `h` in batch `b`; part 0, 1, 2 = q, k, v.
  int64_t Offset(int64_t b, int64_t h, int64_t token, int part) const {
    return (b * shape.tokens + token) * row_stride + (part * shape.heads + h) * shape.head_dim;
  }
  int64_t OutOffset(int64_t b, int64_t h, int64_t token) const {
    return ((b * shape.tokens + token) * shape.heads + h) * shape.head_dim;
  }
  AttentionShape shape;
  int64_t row_stride;
};

struct Scratch {
  Buffer<float> keys, values, rows, rows2, scores, scores2, grad_k, grad_v, out_rows;
  static Scratch& ForThread() {
    thread_local Scratch scratch;
    return scratch;
  }
};

// Rows of head_dim floats (stride *stride) as right-hand panel rows, which are loaded as whole
// vectors: the rows themselves where head_dim is a multiple of W, else zero-padded copies in
// `padded` (and *stride becomes the padded width).
const float* WholeVectorRows(const float* rows, int64_t tokens, int64_t head_dim, int64_t* stride,
                             Buffer<float>& padded) {
  const int64_t dim = RoundUp(head_dim, W);
  if (dim == head_dim) return rows;
  float* copy = padded.Zeroed(tokens * dim);
  for (int64_t j = 0; j < tokens; ++j)
    memcpy(copy + j * dim, rows + j * *stride, head_dim * sizeof(float));
  *stride = dim;
  return copy;
}

// Asks for the next block's rows (head_dim elements, row stride `stride`) to be brought into
// L2 while this block computes: the first reads of a block's Q, O and dO rows otherwise miss
// the cache for most of their time.
template <typename T>
void PrefetchNextBlock(const T* rows, int64_t stride, int64_t i0, int64_t tokens,
                       int64_t head_dim) {
  for (int64_t i = i0 + QB; i < Min(i0 + 2 * QB, tokens); ++i)
    for (int64_t d = 0; d < head_dim; d += 64 / sizeof(T))
      __builtin_prefetch(rows + i * stride + d, 0, 2);
}

// The float32 sum of a[d] * b[d] for d < n.
template <typename T>
float Dot(const T* a, const T* b, int64_t n) {
  vf sum = vf{};
  int64_t d = 0;
  for (; d + W <= n; d += W) sum += Load(a + d) * Load(b + d);
  float total = Sum(sum);
  for (; d < n; ++d) total += ToFloat(a[d]) * ToFloat(b[d]);
  return total;
}

// rows (count x width, row stride `stride`) into `block` (block_rows x cols), zero-padded.
void CopyBlock(const float* rows, int64_t stride, int64_t count, int64_t width, float* block,
               int64_t block_rows, int64_t cols) {
  for (int64_t i = 0; i < block_rows; ++i) {
    const int64_t copied = i < count ? width : 0;
    if (copied > 0) memcpy(block + i * cols, rows + i * stride, copied * sizeof(float));
    memset(block + i * cols + copied, 0, (cols - copied) * sizeof(float));
  }
}

// to[c * to_stride + r] = scale * from[r * from_stride + c] for r < rows, c < cols (multiples
// of W), by W x W tiles transposed in registers.
void TransposeBlock(const float* from, int64_t from_stride, int64_t rows, int64_t cols, float scale,
                    float* to, int64_t to_stride) {
  for (int64_t r0 = 0; r0 < rows; r0 += W) {
    for (int64_t c0 = 0; c0 < cols; c0 += W) {
      vf tile[W];
      for (int r = 0; r < W; ++r) tile[r] = Load(from + (r0 + r) * from_stride + c0);
      Transpose(tile);
      for (int c = 0; c < W; ++c) Store(to + (c0 + c) * to_stride + r0, tile[c] * scale);
    }
  }
}

// The forward of one head, float32. q, k, v: (tokens x head_dim) with row stride `stride`
// (straight into qkv, no copy); out rows of head_dim with stride `out_stride`.
//
// QB queries at a time: S^T = K Q^T (tokens x QB, keys down, queries across) comes from rows of
// K times a small packed Q^T panel, so the softmax over keys is a column-wise pass over whole
// vectors, and O = P V reads P^T by columns and V rows straight from qkv. `mask`: the batch
// row's key-padding mask, or null.
void ForwardHead(const float* q, const float* k, const float* v, int64_t stride, int64_t tokens,
                 int64_t head_dim, float scale, float* out, int64_t out_stride, float* lse,
                 const HeadDropout& dropout, const uint8_t* mask) {
  Scratch& m = Scratch::ForThread();
  const int64_t dim = RoundUp(head_dim, W);
  float* qt = m.rows.Reserve(dim * QB);       // Q^T panel
  float* q_rows = m.rows2.Reserve(QB * dim);  // Q rows
  float* st = m.scores.Reserve(tokens * QB);
  float* out_rows = m.out_rows.Reserve(QB * dim);
  int64_t value_stride = stride;
  const float* values = WholeVectorRows(v, tokens, head_dim, &value_stride, m.values);
  for (int64_t i0 = 0; i0 < tokens; i0 += QB) {
    const int64_t count = Min(QB, tokens - i0);
    PrefetchNextBlock(q, stride, i0, tokens, head_dim);
    CopyBlock(q + i0 * stride, stride, count, head_dim, q_rows, QB, dim);
    TransposeBlock(q_rows, dim, QB, dim, scale, qt, QB);
    Product(k, stride, 1, tokens, head_dim, qt, QB, QB, st, QB);
    const BlockMask block_mask(mask, i0, count);
    block_mask.Scores(st, tokens);
    float inverse[QB];  // 1 / softmax denominators
    for (int c = 0; c < QB / W; ++c) {
      vf max = Load(st + c * W);
      for (int64_t j = 1; j < tokens; ++j) {
        const vf s = Load(st + j * QB + c * W);
        max = s > max ? s : max;
      }
      vf sum = vf{};
      for (int64_t j = 0; j < tokens; ++j) {
        vf p = Exp(Load(st + j * QB + c * W) - max);
        if (mask != nullptr) p *= block_mask.Keep(j, c);
        Store(st + j * QB + c * W, p);
        sum += p;
      }
      for (int i = 0; i < W && c * W + i < count; ++i) {
        lse[i0 + c * W + i] = max[i] + logf(sum[i]);
        inverse[c * W + i] = 1.0f / sum[i];
      }
      if (!dropout.active) continue;
      for (int64_t j0 = 0; j0 < tokens; j0 += 4) {
        vf factors[4];
        dropout.Factors(i0 + c * W, j0 / 4, factors);
        for (int64_t j = j0; j < Min(j0 + 4, tokens); ++j)
          Store(st + j * QB + c * W, Load(st + j * QB + c * W) * factors[j - j0]);
      }
    }
    Product(st, 1, QB, count, tokens, values, value_stride, dim, out_rows, dim);
    for (int64_t i = 0; i < count; ++i) {
      for (int64_t d = 0; d < head_dim; ++d)
        out[(i0 + i) * out_stride + d] = out_rows[i * dim + d] * inverse[i];
    }
  }
}

// q, k, v of head h in batch b as float rows of (q | k | v), 3 * head_dim wide.
float* HeadAsFloat(const uint16_t* qkv, const Head& g, int64_t b, int64_t h,
                   Buffer<float>& buffer) {
  const int64_t hd = g.shape.head_dim;
  float* head = buffer.Reserve(g.shape.tokens * 3 * hd);
  for (int64_t j = 0; j < g.shape.tokens; ++j)
    for (int part = 0; part < 3; ++part)
      for (int64_t d = 0; d < hd; ++d)
        head[(j * 3 + part) * hd + d] = ToFloat(qkv[g.Offset(b, h, j, part) + d]);
  return head;
}

void AttentionForwardHead(const float* qkv, float* out, float* logsumexp, const Head& g, int64_t b,
                          int64_t h) {
  ForwardHead(qkv + g.Offset(b, h, 0, 0), qkv + g.Offset(b, h, 0, 1), qkv + g.Offset(b, h, 0, 2),
              g.row_stride, g.shape.tokens, g.shape.head_dim, g.shape.scale,
              out + g.OutOffset(b, h, 0), g.shape.heads * g.shape.head_dim,
              logsumexp + (b * g.shape.heads + h) * g.shape.tokens, DropoutOf(g.shape, b, h),
              MaskRow(g.shape, b));
}

#if defined(__AVX512BF16__)
// bfloat16 on AVX512_BF16: the float32 forward's structure with both products as vdpbf16ps,
// which multiplies bf16 pairs along the reduction axis and accumulates in float32. Right-hand
// panels interleave those pairs: element (k, col) of a (depth x cols) panel sits at
// ((k / 2) * cols + col) * 2 + k % 2, so one 512-bit load holds 16 columns x 2 k's. Left-hand
// pairs are broadcast: K rows hold them already (consecutive head dims); P is written so.
constexpr int BW = 16;  // float lanes per vdpbf16ps

inline int64_t Interleaved(int64_t k, int64_t col, int64_t cols) {
  return ((k / 2) * cols + col) * 2 + (k & 1);
}

// out[r][col0 + i] (+)= sum_k a(r, k) b(k, col0 + i) for r < R, i < C * 16; the pair
// (a(r, k), a(r, k + 1)) is at a + r * a_row + (k / 2) * a_pair; depth even.
template <int ROWS, int C>
void BfPanel(const uint16_t* a, int64_t a_row, int64_t a_pair, int64_t depth, const uint16_t* b,
             int64_t cols, int64_t col0, float* out, int64_t ldo, bool accumulate) {
  __m512 acc[ROWS][C];
  for (int r = 0; r < ROWS; ++r)
    for (int c = 0; c < C; ++c)
      acc[r][c] = accumulate ? _mm512_loadu_ps(out + r * ldo + col0 + c * BW) : _mm512_setzero_ps();
  for (int64_t k = 0; k < depth; k += 2) {
    __m512bh panel[C];
    for (int c = 0; c < C; ++c)
      panel[c] = (__m512bh)_mm512_loadu_si512(b + ((k / 2) * cols + col0 + c * BW) * 2);
    const uint16_t* pairs = a + (k / 2) * a_pair;
    for (int r = 0; r < ROWS; ++r) {
      uint32_t pair;
      memcpy(&pair, pairs + r * a_row, sizeof pair);
      const __m512bh scalar = (__m512bh)_mm512_set1_epi32(static_cast<int>(pair));
      for (int c = 0; c < C; ++c) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], scalar, panel[c]);
    }
  }
  for (int r = 0; r < ROWS; ++r)
    for (int c = 0; c < C; ++c) _mm512_storeu_ps(out + r * ldo + col0 + c * BW, acc[r][c]);
}

template <int ROWS>
void BfPanels(const uint16_t* a, int64_t a_row, int64_t a_pair, int64_t depth, const uint16_t* b,
              int64_t cols, float* out, int64_t ldo, bool accumulate) {
  int64_t col = 0;
  for (; col + 4 * BW <= cols; col += 4 * BW)
    BfPanel<ROWS, 4>(a, a_row, a_pair, depth, b, cols, col, out, ldo, accumulate);
  for (; col < cols; col += BW)
    BfPanel<ROWS, 1>(a, a_row, a_pair, depth, b, cols, col, out, ldo, accumulate);
}

// out (rows x cols) (+)= A (rows x depth, pairs as BfPanel) times the interleaved b
// (depth x cols).
void BfProduct(const uint16_t* a, int64_t a_row, int64_t a_pair, int64_t rows, int64_t depth,
               const uint16_t* b, int64_t cols, float* out, int64_t ldo, bool accumulate = false) {
  int64_t r = 0;
  for (; r + R <= rows; r += R)
    BfPanels<R>(a + r * a_row, a_row, a_pair, depth, b, cols, out + r * ldo, ldo, accumulate);
  for (; r < rows; ++r)
    BfPanels<1>(a + r * a_row, a_row, a_pair, depth, b, cols, out + r * ldo, ldo, accumulate);
}

// 16 queries' values at keys j (even) and j + 1, rounded to bf16 and stored as 16 pairs.
inline void StorePairs(vf even, vf odd, uint16_t* pairs) {
  const __m512i interleave =
      _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                       21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  __m512 low, high;
  memcpy(&low, &even, sizeof low);
  memcpy(&high, &odd, sizeof high);
  const __m512i both = (__m512i)_mm512_cvtne2ps_pbh(high, low);  // even in 0..15, odd above
  _mm512_storeu_si512(pairs, _mm512_permutexvar_epi16(interleave, both));
}

// 16 floats rounded to bf16, stored in order.
inline void StoreRow(vf x, uint16_t* row) {
  __m512 v;
  memcpy(&v, &x, sizeof v);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(row), (__m256i)_mm512_cvtneps_pbh(v));
}

// row[d] = bf16(values[d] * scale) for d < n.
void RoundRow(const float* values, float scale, int64_t n, uint16_t* row) {
  int64_t d = 0;
  for (; d + BW <= n; d += BW) StoreRow(Load(values + d) * scale, row + d);
  for (; d < n; ++d) FromFloat(values[d] * scale, row + d);
}

// rows (count x width, row stride `stride`) as an interleaved panel of panel_rows x cols
// (panel_rows even, >= count), zero-padded: the right-hand side of a product that reduces over
// the rows. Two rows at a time, 32 values of each interleaved by two permutes.
void InterleaveRows(const uint16_t* rows, int64_t stride, int64_t count, int64_t width,
                    int64_t cols, int64_t panel_rows, Buffer<uint16_t>& buffer) {
  uint16_t* panel = buffer.Zeroed(panel_rows * cols);
  // a[0] b[0] a[1] b[1] ... from a[0..15] and b[0..15], then from a[16..31] and b[16..31]
  const __m512i low = _mm512_set_epi16(47, 15, 46, 14, 45, 13, 44, 12, 43, 11, 42, 10, 41, 9, 40, 8,
                                       39, 7, 38, 6, 37, 5, 36, 4, 35, 3, 34, 2, 33, 1, 32, 0);
  const __m512i high = _mm512_add_epi16(low, _mm512_set1_epi16(16));
  for (int64_t j = 0; j < count; j += 2) {
    const uint16_t* even = rows + j * stride;
    const uint16_t* odd = j + 1 < count ? even + stride : nullptr;
    uint16_t* pairs = panel + (j / 2) * cols * 2;
    int64_t d = 0;
    for (; d + 32 <= width; d += 32) {
      const __m512i a = _mm512_loadu_si512(even + d);
      const __m512i b = odd ? _mm512_loadu_si512(odd + d) : _mm512_setzero_si512();
      _mm512_storeu_si512(pairs + 2 * d, _mm512_permutex2var_epi16(a, low, b));
      _mm512_storeu_si512(pairs + 2 * d + 32, _mm512_permutex2var_epi16(a, high, b));
    }
    for (; d < width; ++d) {
      pairs[2 * d] = even[d];
      pairs[2 * d + 1] = odd ? odd[d] : 0;
    }
  }
}

// The transpose of rows (count <= QB rows of an even width, stride `stride`) as an interleaved
// panel of width x QB, zero-padded: the right-hand side of a product that reduces over the row
// width. Each pair of a row is one 32-bit word; 16 x 16 tiles of them are transposed in
// registers (a gather per 16 words was slower: on AMD it loads one word at a time).
void InterleaveColumns(const uint16_t* rows, int64_t stride, int64_t count, int64_t width,
                       Buffer<uint16_t>& panel) {
  uint32_t* words = reinterpret_cast<uint32_t*>(panel.Zeroed(width * QB));  // (width / 2) x QB
  const int64_t row_words = width / 2;
  for (int64_t i0 = 0; i0 < count; i0 += BW) {
    for (int64_t p0 = 0; p0 < row_words; p0 += BW) {
      const int64_t tile_words = Min(BW, row_words - p0);
      const __mmask16 words_left = static_cast<__mmask16>((1u << tile_words) - 1u);
      vf tile[BW];
      for (int i = 0; i < BW; ++i)
        tile[i] = i0 + i < count
                      ? (vf)_mm512_maskz_loadu_epi32(words_left, rows + (i0 + i) * stride + 2 * p0)
                      : vf{};
      Transpose(tile);
      for (int64_t p = 0; p < tile_words; ++p)
        Store(reinterpret_cast<float*>(words + (p0 + p) * QB + i0), tile[p]);
    }
  }
}

struct BfScratch {
  Buffer<uint16_t> queries, values, probabilities, keys, grad_out_t, query_rows, grad_out_rows,
      grad_score_rows, grad_score_pairs;
  Buffer<float> scores, out_rows, grad_probabilities, grad_k, grad_v;
  static BfScratch& ForThread() {
    thread_local BfScratch scratch;
    return scratch;
  }
};

// For an even head_dim (the pairs of K rows must not cross heads).
void BfForwardHead(const uint16_t* qkv, uint16_t* out, float* logsumexp, const Head& g, int64_t b,
                   int64_t h) {
  BfScratch& m = BfScratch::ForThread();
  const int64_t tokens = g.shape.tokens, hd = g.shape.head_dim;
  const int64_t dim = RoundUp(hd, BW), pairs = RoundUp(tokens, 2);
  InterleaveRows(qkv + g.Offset(b, h, 0, 2), g.row_stride, tokens, hd, dim, pairs, m.values);
  float* st = m.scores.Reserve(tokens * QB);
  uint16_t* probabilities = m.probabilities.Reserve(pairs * QB);
  float* out_rows = m.out_rows.Reserve(QB * dim);
  float* lse = logsumexp + (b * g.shape.heads + h) * tokens;
  const HeadDropout dropout = DropoutOf(g.shape, b, h);
  const uint8_t* mask = MaskRow(g.shape, b);
  const vf zero = vf{};
  for (int64_t i0 = 0; i0 < tokens; i0 += QB) {
    const int64_t count = Min(QB, tokens - i0);
    PrefetchNextBlock(qkv + g.Offset(b, h, 0, 0), g.row_stride, i0, tokens, hd);
    InterleaveColumns(qkv + g.Offset(b, h, i0, 0), g.row_stride, count, hd, m.queries);
    BfProduct(qkv + g.Offset(b, h, 0, 1), g.row_stride, 2, tokens, hd, m.queries.data(), QB, st,
              QB);
    const BlockMask block_mask(mask, i0, count);
    block_mask.Scores(st, tokens);
    float inverse[QB];
    for (int c = 0; c < QB / W; ++c) {
      vf max = Load(st + c * W) * g.shape.scale;
      for (int64_t j = 1; j < tokens; ++j) {
        const vf s = Load(st + j * QB + c * W) * g.shape.scale;
        max = s > max ? s : max;
      }
      vf sum = vf{};
      vf factors[4];
      for (int64_t j = 0; j < pairs; j += 2) {
        vf p0 = Exp(Load(st + j * QB + c * W) * g.shape.scale - max);
        vf p1 = j + 1 < tokens ? Exp(Load(st + (j + 1) * QB + c * W) * g.shape.scale - max) : zero;
        if (mask != nullptr) {
          p0 *= block_mask.Keep(j, c);
          if (j + 1 < tokens) p1 *= block_mask.Keep(j + 1, c);
        }
        sum += p0 + p1;
        if (dropout.active) {
          if (j % 4 == 0) dropout.Factors(i0 + c * W, j / 4, factors);
          p0 *= factors[j % 4];
          p1 *= factors[j % 4 + 1];
        }
        StorePairs(p0, p1, probabilities + ((j / 2) * QB + c * W) * 2);
      }
      for (int i = 0; i < W && c * W + i < count; ++i) {
        lse[i0 + c * W + i] = max[i] + logf(sum[i]);
        inverse[c * W + i] = 1.0f / sum[i];
      }
    }
    BfProduct(probabilities, 2, 2 * QB, count, pairs, m.values.data(), dim, out_rows, dim);
    for (int64_t i = 0; i < count; ++i)
      RoundRow(out_rows + i * dim, inverse[i], hd, out + g.OutOffset(b, h, i0 + i));
  }
}

// The float32 backward's structure (BackwardHead) with all five products as vdpbf16ps: S^T and
// dP^T reduce over head dims (K and V rows from qkv against interleaved Q^T and dO^T panels);
// dQ = dS K reduces over keys (dS in pairs along keys, K interleaved); dV += (f P)^T dO and
// dK += dS^T Q reduce over queries (f P and dS as bf16 rows over queries, dO and Q interleaved).
// f P and dS are rounded to bf16 before their products, as the forward rounds f P; every sum
// is float32, and dQ, dK and dV are rounded once. For an even head_dim.
void BfBackwardHead(const uint16_t* qkv, const uint16_t* out, const float* logsumexp,
                    const uint16_t* grad_out, uint16_t* grad_qkv, const Head& g, int64_t b,
                    int64_t h) {
  BfScratch& m = BfScratch::ForThread();
  const int64_t tokens = g.shape.tokens, hd = g.shape.head_dim, out_stride = g.shape.heads * hd;
  const int64_t dim = RoundUp(hd, BW), pairs = RoundUp(tokens, 2);
  const float scale = g.shape.scale;
  const float* lse = logsumexp + (b * g.shape.heads + h) * tokens;
  const uint16_t* q = qkv + g.Offset(b, h, 0, 0);
  const uint16_t* o = out + g.OutOffset(b, h, 0);
  const uint16_t* grad_o = grad_out + g.OutOffset(b, h, 0);
  const HeadDropout dropout = DropoutOf(g.shape, b, h);
  const uint8_t* mask = MaskRow(g.shape, b);
  InterleaveRows(qkv + g.Offset(b, h, 0, 1), g.row_stride, tokens, hd, dim, pairs, m.keys);
  float* st = m.scores.Reserve(tokens * QB);                            // S^T
  float* dpt = m.grad_probabilities.Reserve(tokens * QB);               // dP^T
  uint16_t* probabilities = m.probabilities.Reserve(tokens * QB);       // (f P)^T, bf16 rows
  uint16_t* grad_score_rows = m.grad_score_rows.Reserve(tokens * QB);   // dS^T, likewise
  uint16_t* grad_score_pairs = m.grad_score_pairs.Reserve(pairs * QB);  // dS, pairs along keys
  float* out_rows = m.out_rows.Reserve(QB * dim);                       // dQ
  float* grad_k = m.grad_k.Zeroed(tokens * dim);
  float* grad_v = m.grad_v.Zeroed(tokens * dim);
  for (int64_t i0 = 0; i0 < tokens; i0 += QB) {
    const int64_t count = Min(QB, tokens - i0);
    PrefetchNextBlock(q, g.row_stride, i0, tokens, hd);
    PrefetchNextBlock(o, out_stride, i0, tokens, hd);
    PrefetchNextBlock(grad_o, out_stride, i0, tokens, hd);
    InterleaveColumns(q + i0 * g.row_stride, g.row_stride, count, hd, m.queries);
    InterleaveColumns(grad_o + i0 * out_stride, out_stride, count, hd, m.grad_out_t);
    // QB rows: queries past count reduce as zeros.
    InterleaveRows(q + i0 * g.row_stride, g.row_stride, count, hd, dim, QB, m.query_rows);
    InterleaveRows(grad_o + i0 * out_stride, out_stride, count, hd, dim, QB, m.grad_out_rows);
    alignas(64) float query_lse[QB] = {}, delta[QB] = {}, valid[QB] = {};
    for (int64_t i = 0; i < count; ++i) {
      delta[i] = Dot(grad_o + (i0 + i) * out_stride, o + (i0 + i) * out_stride, hd);
      query_lse[i] = lse[i0 + i];
      valid[i] = 1.0f;
    }
    BfProduct(qkv + g.Offset(b, h, 0, 1), g.row_stride, 2, tokens, hd, m.queries.data(), QB, st,
              QB);
    BfProduct(qkv + g.Offset(b, h, 0, 2), g.row_stride, 2, tokens, hd, m.grad_out_t.data(), QB, dpt,
              QB);
    const BlockMask block_mask(mask, i0, count);
    block_mask.Scores(st, tokens);
    // With dropout factors f: dV takes f P, and dS = P (f dP - delta) * scale.
    for (int c = 0; c < QB / W; ++c) {
      const vf column_lse = Load(query_lse + c * W), column_delta = Load(delta + c * W);
      const vf column_valid = Load(valid + c * W);
      // dS of one key for these W queries (zero past the last key); f P and dS also stored as
      // bf16 rows. Four keys a step, one per dropout factor, keep everything in registers.
      const auto grad_score = [&](int64_t key, vf factor) {
        if (key >= tokens) return vf{};
        const int64_t at = key * QB + c * W;
        vf p = Exp(Load(st + at) * scale - column_lse) * column_valid;
        if (mask != nullptr) p *= block_mask.Keep(key, c);
        vf ds = p * (Load(dpt + at) * factor - column_delta) * scale;
        if (mask != nullptr) ds *= block_mask.RealQueries(c);
        StoreRow(p * factor, probabilities + at);
        StoreRow(ds, grad_score_rows + at);
        return ds;
      };
      vf factors[4] = {Splat(1.0f), Splat(1.0f), Splat(1.0f), Splat(1.0f)};
      for (int64_t j = 0; j < pairs; j += 4) {
        if (dropout.active) dropout.Factors(i0 + c * W, j / 4, factors);
        uint16_t* four = grad_score_pairs + ((j / 2) * QB + c * W) * 2;
        StorePairs(grad_score(j, factors[0]), grad_score(j + 1, factors[1]), four);
        if (j + 2 < pairs)
          StorePairs(grad_score(j + 2, factors[2]), grad_score(j + 3, factors[3]), four + 2 * QB);
      }
    }
    BfProduct(grad_score_pairs, 2, 2 * QB, count, pairs, m.keys.data(), dim, out_rows, dim);
    for (int64_t i = 0; i < count; ++i)
      RoundRow(out_rows + i * dim, 1.0f, hd, grad_qkv + g.Offset(b, h, i0 + i, 0));
    BfProduct(probabilities, QB, 2, tokens, QB, m.grad_out_rows.data(), dim, grad_v, dim, true);
    BfProduct(grad_score_rows, QB, 2, tokens, QB, m.query_rows.data(), dim, grad_k, dim, true);
  }
  for (int64_t j = 0; j < tokens; ++j) {
    RoundRow(grad_k + j * dim, 1.0f, hd, grad_qkv + g.Offset(b, h, j, 1));
    RoundRow(grad_v + j * dim, 1.0f, hd, grad_qkv + g.Offset(b, h, j, 2));
  }
}
#endif

// The backward of one head, float32, FlashAttention's way: probabilities recomputed from the
// saved log-sum-exp, QB queries at a time, dK and dV accumulated for the whole head.
// q, k, v and grad_out rows have strides `stride` and `out_stride`; out likewise.
void BackwardHead(const float* q, const float* k, const float* v, int64_t stride, const float* out,
                  const float* grad_out, int64_t out_stride, const float* lse, int64_t tokens,
                  int64_t head_dim, float scale, float* grad_q, float* grad_k, float* grad_v,
                  int64_t grad_stride, const HeadDropout& dropout, const uint8_t* mask) {
  Scratch& m = Scratch::ForThread();
  const int64_t dim = RoundUp(head_dim, W);
  float* qt = m.rows.Reserve(2 * dim * QB);  // Q^T * scale, dO^T
  float* dot = qt + dim * QB;
  float* q_rows = m.rows2.Reserve(2 * QB * dim);  // Q rows, dO rows
  float* do_rows = q_rows + QB * dim;
  float* pt = m.scores.Reserve(tokens * QB);    // P^T
  float* dst = m.scores2.Reserve(tokens * QB);  // dP^T, then dS^T
  float* grad_k_rows = m.grad_k.Zeroed(tokens * dim);
  float* grad_v_rows = m.grad_v.Zeroed(tokens * dim);
  float* out_rows = m.out_rows.Reserve(QB * dim);  // dQ rows
  int64_t key_stride = stride;
  const float* keys = WholeVectorRows(k, tokens, head_dim, &key_stride, m.keys);
  for (int64_t i0 = 0; i0 < tokens; i0 += QB) {
    const int64_t count = Min(QB, tokens - i0);
    PrefetchNextBlock(q, stride, i0, tokens, head_dim);
    PrefetchNextBlock(out, out_stride, i0, tokens, head_dim);
    PrefetchNextBlock(grad_out, out_stride, i0, tokens, head_dim);
    CopyBlock(q + i0 * stride, stride, count, head_dim, q_rows, QB, dim);
    CopyBlock(grad_out + i0 * out_stride, out_stride, count, head_dim, do_rows, QB, dim);
    TransposeBlock(q_rows, dim, QB, dim, scale, qt, QB);
    TransposeBlock(do_rows, dim, QB, dim, 1.0f, dot, QB);
    alignas(64) float query_lse[QB] = {}, delta[QB] = {};
    for (int64_t i = 0; i < count; ++i) {
      delta[i] = Dot(grad_out + (i0 + i) * out_stride, out + (i0 + i) * out_stride, head_dim);
      query_lse[i] = lse[i0 + i];
    }
    Product(k, stride, 1, tokens, head_dim, qt, QB, QB, pt, QB);    // S^T
    Product(v, stride, 1, tokens, head_dim, dot, QB, QB, dst, QB);  // dP^T
    const BlockMask block_mask(mask, i0, count);
    block_mask.Scores(pt, tokens);
    // With dropout factors f: dV takes f P, and dS = P (f dP - delta).
    vf factors[QB / W][4];
    for (int c = 0; c < QB / W; ++c)
      for (int k4 = 0; k4 < 4; ++k4) factors[c][k4] = Splat(1.0f);
    for (int64_t j = 0; j < tokens; ++j) {
      for (int c = 0; c < QB / W; ++c) {
        if (dropout.active && j % 4 == 0) dropout.Factors(i0 + c * W, j / 4, factors[c]);
        const vf factor = factors[c][j % 4];
        vf p = Exp(Load(pt + j * QB + c * W) - Load(query_lse + c * W));
        if (mask != nullptr) p *= block_mask.Keep(j, c);
        vf ds = p * (Load(dst + j * QB + c * W) * factor - Load(delta + c * W)) * scale;
        if (mask != nullptr) ds *= block_mask.RealQueries(c);
        Store(pt + j * QB + c * W, p * factor);
        Store(dst + j * QB + c * W, ds);
      }
      for (int64_t i = count; i < QB; ++i) pt[j * QB + i] = dst[j * QB + i] = 0.0f;
    }
    // dQ = dS K; dV += P^T dO; dK += dS^T Q.
    Product(dst, 1, QB, count, tokens, keys, key_stride, dim, out_rows, dim);
    for (int64_t i = 0; i < count; ++i)
      memcpy(grad_q + (i0 + i) * grad_stride, out_rows + i * dim, head_dim * sizeof(float));
    Product(pt, QB, 1, tokens, QB, do_rows, dim, dim, grad_v_rows, dim, true);
    Product(dst, QB, 1, tokens, QB, q_rows, dim, dim, grad_k_rows, dim, true);
  }
  for (int64_t j = 0; j < tokens; ++j) {
    memcpy(grad_k + j * grad_stride, grad_k_rows + j * dim, head_dim * sizeof(float));
    memcpy(grad_v + j * grad_stride, grad_v_rows + j * dim, head_dim * sizeof(float));
  }
}

void AttentionForwardHead(const uint16_t* qkv, uint16_t* out, float* logsumexp, const Head& g,
                          int64_t b, int64_t h) {
#if defined(__AVX512BF16__)
  if (g.shape.head_dim % 2 == 0) return BfForwardHead(qkv, out, logsumexp, g, b, h);
#endif
  // Without vdpbf16ps, or for an odd head_dim: through float copies of the head.
  const int64_t hd = g.shape.head_dim, tokens = g.shape.tokens;
  thread_local Buffer<float> head_buffer, result_buffer;
  const float* head = HeadAsFloat(qkv, g, b, h, head_buffer);
  float* result = result_buffer.Reserve(tokens * hd);
  ForwardHead(head, head + hd, head + 2 * hd, 3 * hd, tokens, hd, g.shape.scale, result, hd,
              logsumexp + (b * g.shape.heads + h) * tokens, DropoutOf(g.shape, b, h),
              MaskRow(g.shape, b));
  for (int64_t j = 0; j < tokens; ++j)
    for (int64_t d = 0; d < hd; ++d) FromFloat(result[j * hd + d], out + g.OutOffset(b, h, j) + d);
}

void AttentionBackwardHead(const float* qkv, const float* out, const float* logsumexp,
                           const float* grad_out, float* grad_qkv, const Head& g, int64_t b,
                           int64_t h) {
  BackwardHead(qkv + g.Offset(b, h, 0, 0), qkv + g.Offset(b, h, 0, 1), qkv + g.Offset(b, h, 0, 2),
               g.row_stride, out + g.OutOffset(b, h, 0), grad_out + g.OutOffset(b, h, 0),
               g.shape.heads * g.shape.head_dim,
               logsumexp + (b * g.shape.heads + h) * g.shape.tokens, g.shape.tokens,
               g.shape.head_dim, g.shape.scale, grad_qkv + g.Offset(b, h, 0, 0),
               grad_qkv + g.Offset(b, h, 0, 1), grad_qkv + g.Offset(b, h, 0, 2), g.row_stride,
               DropoutOf(g.shape, b, h), MaskRow(g.shape, b));
}

void AttentionBackwardHead(const uint16_t* qkv, const uint16_t* out, const float* logsumexp,
                           const uint16_t* grad_out, uint16_t* grad_qkv, const Head& g, int64_t b,
                           int64_t h) {
#if defined(__AVX512BF16__)
  if (g.shape.head_dim % 2 == 0)
    return BfBackwardHead(qkv, out, logsumexp, grad_out, grad_qkv, g, b, h);
#endif
  // Without vdpbf16ps, or for an odd head_dim: through float copies of the head.
  const int64_t hd = g.shape.head_dim, tokens = g.shape.tokens;
  thread_local Buffer<float> head_buffer, rows_buffer, grads_buffer;
  const float* head = HeadAsFloat(qkv, g, b, h, head_buffer);
  float* rows = rows_buffer.Reserve(tokens * 2 * hd);  // out, grad_out
  float* grads = grads_buffer.Reserve(tokens * 3 * hd);
  for (int64_t j = 0; j < tokens; ++j) {
    for (int64_t d = 0; d < hd; ++d) {
      rows[j * 2 * hd + d] = ToFloat(out[g.OutOffset(b, h, j) + d]);
      rows[j * 2 * hd + hd + d] = ToFloat(grad_out[g.OutOffset(b, h, j) + d]);
    }
  }
  BackwardHead(head, head + hd, head + 2 * hd, 3 * hd, rows, rows + hd, 2 * hd,
               logsumexp + (b * g.shape.heads + h) * tokens, tokens, hd, g.shape.scale, grads,
               grads + hd, grads + 2 * hd, 3 * hd, DropoutOf(g.shape, b, h), MaskRow(g.shape, b));
  for (int64_t j = 0; j < tokens; ++j)
    for (int part = 0; part < 3; ++part)
      for (int64_t d = 0; d < hd; ++d)
        FromFloat(grads[(j * 3 + part) * hd + d], grad_qkv + g.Offset(b, h, j, part) + d);
}

// Cycles per (batch, head) task, for the thread pool's splitting.
int64_t HeadCost(const AttentionShape& s) {
  return Max(1, 4 * s.tokens * s.tokens * s.head_dim / (2 * W));
}

// One (batch, head) task after another on the caller's threads.
template <typename T>
void ForEachHead(const AttentionShape& s, const ParallelFor& parallel_for, int64_t cost,
                 const T& head) {
  Parallel(parallel_for, s.batch * s.heads, cost, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) head(task / s.heads, task % s.heads);
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
  ForEachHead(shape, parallel_for, HeadCost(shape),
              [&](int64_t b, int64_t h) { AttentionForwardHead(qkv, out, logsumexp, g, b, h); });
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
  Parallel(parallel_for, s.batch, 4 * s.tokens * s.dim, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const float* t = tokens + b * s.tokens * s.dim;
      float* w = weights + b * s.tokens;
      float max = -INFINITY;
      for (int64_t n = 0; n < s.tokens; ++n) {
        float score = bias;
        for (int64_t d = 0; d < s.dim; ++d) score += t[n * s.dim + d] * kernel[d];
        w[n] = score;
        max = score > max ? score : max;
      }
      float total = 0.0f;
      for (int64_t n = 0; n < s.tokens; ++n) total += (w[n] = expf(w[n] - max));
      float* o = out + b * s.dim;
      memset(o, 0, s.dim * sizeof(float));
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
  Buffer<float> score_grads;
  score_grads.Reserve(s.batch * s.tokens);
  Parallel(parallel_for, s.batch, 6 * s.tokens * s.dim, [&](int64_t begin, int64_t end) {
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
  Parallel(parallel_for, s.dim, 2 * s.batch * s.tokens, [&](int64_t begin, int64_t end) {
    for (int64_t d = begin; d < end; ++d) {
      float sum = 0.0f;
      for (int64_t i = 0; i < s.batch * s.tokens; ++i)
        sum += score_grads[i] * tokens[i * s.dim + d];
      grad_kernel[d] = sum;
    }
  });
  float bias = 0.0f;
  for (int64_t i = 0; i < s.batch * s.tokens; ++i) bias += score_grads[i];
  *grad_bias = bias;
}

}  // namespace CCT_ISA
}  // namespace cct_kernels
