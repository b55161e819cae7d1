// Exact GELU of x + bias (the MLP's first linear layer, whose GEMM TensorFlow runs), forward and
// backward in one pass over each row, in float32 whatever the element type:
//   gelu(s) = s Phi(s) = 0.5 s (1 + erf(s / sqrt 2)),  gelu'(s) = Phi(s) + s phi(s).
// erf is a rational function of s^2 fitted for this file (kernels/erf_fit.py prints it and its
// error: 4e-7 evaluated in float32), so the forward needs no exp and no division. The
// bias gradient is summed per block of rows, then across blocks in order, so threads never
// write the same memory and the sum does not depend on them.
#include <string.h>

#include "kernels.h"
#include "vectors.h"

namespace cct_kernels {
namespace CCT_ISA {
namespace {

constexpr int64_t kBlockRows = 64;  // rows per task, and per partial sum of the bias gradient
// Vectors taken together: each one's erf is a chain of ~20 dependent operations, so one at a
// time would wait on latency; independent chains side by side keep the pipes busy.
constexpr int kGroup = 4;

// erf(x) = x P(x^2) / Q(x^2) on x clamped to [-4, 4], beyond which erf is +-1 in float32.
inline vf Erf(vf x) {
  x = x < Splat(-4.0f) ? Splat(-4.0f) : x;
  x = x > Splat(4.0f) ? Splat(4.0f) : x;
  const vf u = x * x;
  vf p = Splat(1.974406539e-06f);
  p = p * u + 2.879528141e-04f;
  p = p * u + 4.002079367e-03f;
  p = p * u + 5.346270841e-02f;
  p = p * u + 1.962198416e-01f;
  p = p * u + 1.128378979e+00f;
  vf q = Splat(3.747170695e-05f);
  q = q * u + 1.215874596e-03f;
  q = q * u + 1.544141963e-02f;
  q = q * u + 1.164635201e-01f;
  q = q * u + 5.072264931e-01f;
  q = q * u + 1.0f;
  return x * p * Reciprocal(q);
}

// Phi(s), the standard normal distribution function.
inline vf NormalCdf(vf s) { return Erf(s * 0.70710678118654752f) * 0.5f + 0.5f; }

// phi(s), its density.
inline vf NormalDensity(vf s) { return Exp(s * s * -0.5f) * 0.39894228040143268f; }

// A row of `width` elements as floats, zero-padded to `padded`.
template <typename T>
void RowAsFloats(const T* x, int64_t width, int64_t padded, float* row) {
  int64_t d = 0;
  for (; d + W <= width; d += W) Store(row + d, Load(x + d));
  for (; d < width; ++d) row[d] = ToFloat(x[d]);
  for (; d < padded; ++d) row[d] = 0.0f;
}

template <typename T>
void StoreRow(const float* row, int64_t width, T* out) {
  int64_t d = 0;
  for (; d + W <= width; d += W) Store(out + d, Load(row + d));
  for (; d < width; ++d) FromFloat(row[d], out + d);
}

constexpr int64_t kGroupWidth = kGroup * W;

// y = gelu(x + bias) over one group of kGroupWidth elements.
template <typename In, typename Out>
inline void ForwardGroup(const In* x, const float* bias, Out* y) {
  vf s[kGroup];
  for (int k = 0; k < kGroup; ++k) s[k] = Load(x + k * W) + Load(bias + k * W);
  for (int k = 0; k < kGroup; ++k) Store(y + k * W, s[k] * NormalCdf(s[k]));
}

// grad_x = grad_y gelu'(x + bias) over one group, added to bias_sum too.
template <typename In, typename Out>
inline void BackwardGroup(const In* x, const float* bias, const In* grad_y, Out* grad_x,
                          float* bias_sum) {
  vf s[kGroup];
  for (int k = 0; k < kGroup; ++k) s[k] = Load(x + k * W) + Load(bias + k * W);
  for (int k = 0; k < kGroup; ++k) {
    const vf slope = NormalCdf(s[k]) + s[k] * NormalDensity(s[k]);
    const vf gradient = Load(grad_y + k * W) * slope;
    Store(grad_x + k * W, gradient);
    Store(bias_sum + k * W, Load(bias_sum + k * W) + gradient);
  }
}

// The bias, zero-padded to whole groups: a row's last, partial group reads it whole.
Buffer<float>& PaddedBias(const float* bias, int64_t width, Buffer<float>& buffer) {
  RowAsFloats(bias, width, RoundUp(width, kGroupWidth),
              buffer.Reserve(RoundUp(width, kGroupWidth)));
  return buffer;
}

// Whole groups straight from and to the tensors; a row's last, partial group through
// zero-padded copies.
template <typename T>
void Forward(const T* x, const float* bias, T* y, const BiasGeluShape& shape,
             const ParallelFor& parallel_for) {
  const int64_t width = shape.width, whole = width / kGroupWidth * kGroupWidth;
  const int64_t blocks = (shape.rows + kBlockRows - 1) / kBlockRows;
  Buffer<float> padded_bias_buffer;
  const float* padded_bias = PaddedBias(bias, width, padded_bias_buffer).data();
  Parallel(parallel_for, blocks, 25 * kBlockRows * width, [&](int64_t begin, int64_t end) {
    alignas(64) float tail[kGroupWidth];
    for (int64_t row = begin * kBlockRows; row < Min(end * kBlockRows, shape.rows); ++row) {
      const T* x_row = x + row * width;
      T* y_row = y + row * width;
      for (int64_t d = 0; d < whole; d += kGroupWidth)
        ForwardGroup(x_row + d, padded_bias + d, y_row + d);
      if (whole == width) continue;
      RowAsFloats(x_row + whole, width - whole, kGroupWidth, tail);
      ForwardGroup(tail, padded_bias + whole, tail);
      StoreRow(tail, width - whole, y_row + whole);
    }
  });
}

template <typename T>
void Backward(const T* x, const float* bias, const T* grad_y, T* grad_x, float* grad_bias,
              const BiasGeluShape& shape, const ParallelFor& parallel_for) {
  const int64_t width = shape.width, whole = width / kGroupWidth * kGroupWidth;
  const int64_t padded = RoundUp(width, kGroupWidth);
  const int64_t blocks = (shape.rows + kBlockRows - 1) / kBlockRows;
  Buffer<float> padded_bias_buffer, partials;  // partials: per block, its rows' bias gradient
  const float* padded_bias = PaddedBias(bias, width, padded_bias_buffer).data();
  partials.Zeroed(blocks * padded);
  Parallel(parallel_for, blocks, 40 * kBlockRows * width, [&](int64_t begin, int64_t end) {
    alignas(64) float tail[2][kGroupWidth];  // x, then the gradient; grad_y
    for (int64_t block = begin; block < end; ++block) {
      float* block_bias = &partials[block * padded];
      const int64_t last = Min((block + 1) * kBlockRows, shape.rows);
      for (int64_t row = block * kBlockRows; row < last; ++row) {
        const int64_t at = row * width;
        for (int64_t d = 0; d < whole; d += kGroupWidth)
          BackwardGroup(x + at + d, padded_bias + d, grad_y + at + d, grad_x + at + d,
                        block_bias + d);
        if (whole == width) continue;
        RowAsFloats(x + at + whole, width - whole, kGroupWidth, tail[0]);
        RowAsFloats(grad_y + at + whole, width - whole, kGroupWidth, tail[1]);
        BackwardGroup(tail[0], padded_bias + whole, tail[1], tail[0], block_bias + whole);
        StoreRow(tail[0], width - whole, grad_x + at + whole);
      }
    }
  });
  memset(grad_bias, 0, width * sizeof(float));
  for (int64_t block = 0; block < blocks; ++block)
    for (int64_t d = 0; d < width; ++d) grad_bias[d] += partials[block * padded + d];
}

}  // namespace

void BiasGeluForward(const float* x, const float* bias, float* y, const BiasGeluShape& shape,
                     const ParallelFor& parallel_for) {
  Forward(x, bias, y, shape, parallel_for);
}
void BiasGeluForward(const uint16_t* x, const float* bias, uint16_t* y, const BiasGeluShape& shape,
                     const ParallelFor& parallel_for) {
  Forward(x, bias, y, shape, parallel_for);
}
void BiasGeluBackward(const float* x, const float* bias, const float* grad_y, float* grad_x,
                      float* grad_bias, const BiasGeluShape& shape,
                      const ParallelFor& parallel_for) {
  Backward(x, bias, grad_y, grad_x, grad_bias, shape, parallel_for);
}
void BiasGeluBackward(const uint16_t* x, const float* bias, const uint16_t* grad_y,
                      uint16_t* grad_x, float* grad_bias, const BiasGeluShape& shape,
                      const ParallelFor& parallel_for) {
  Backward(x, bias, grad_y, grad_x, grad_bias, shape, parallel_for);
}

}  // namespace CCT_ISA
}  // namespace cct_kernels
