// LayerNorm over the last axis, with an optional residual added first, forward and backward in
// one pass over each row: y = (s - mean) * rstd * gamma + beta with s = x (+ f * (residual + b)),
// f the row's drop-path factor (or 1) and b the residual's bias (or 0), the statistics in float32
// whatever the element type. The backward recomputes s and x-hat from the saved mean and rstd
// instead of storing them, and sums the gamma, beta (and bias) gradients per block of rows, then
// across blocks, so threads never write the same memory.
#include <math.h>
#include <string.h>

#include "kernels.h"
#include "vectors.h"

namespace cct_kernels {
namespace CCT_ISA {
namespace {

// Rows per task: enough work to be worth a thread hand-off, few enough partial sums.
constexpr int64_t kBlockRows = 64;

// The factor of row `row`'s residual: its sample's entry of `scale`, or 1 where that is null.
float RowFactor(const float* scale, int64_t rows_per_sample, int64_t row) {
  return scale == nullptr ? 1.0f : scale[row / rows_per_sample];
}

// One row's s = x (+ factor * (residual + bias)) as floats, into `sum` (the row's width, padded
// to W); bias may be null.
template <typename T>
void RowSum(const T* x, const T* residual, const float* bias, float factor, int64_t width,
            float* sum) {
  int64_t d = 0;
  if (residual == nullptr) {
    for (; d + W <= width; d += W) Store(sum + d, Load(x + d));
    for (; d < width; ++d) sum[d] = ToFloat(x[d]);
  } else if (bias == nullptr) {
    for (; d + W <= width; d += W) Store(sum + d, Load(x + d) + Load(residual + d) * factor);
    for (; d < width; ++d) sum[d] = ToFloat(x[d]) + ToFloat(residual[d]) * factor;
  } else {
    for (; d + W <= width; d += W)
      Store(sum + d, Load(x + d) + (Load(residual + d) + Load(bias + d)) * factor);
    for (; d < width; ++d) sum[d] = ToFloat(x[d]) + (ToFloat(residual[d]) + bias[d]) * factor;
  }
}

// Sums `partials` (blocks, stride) into `total` (width).
void SumBlocks(const float* partials, int64_t blocks, int64_t stride, int64_t width, float* total) {
  memset(total, 0, width * sizeof(float));
  for (int64_t block = 0; block < blocks; ++block)
    for (int64_t d = 0; d < width; ++d) total[d] += partials[block * stride + d];
}

template <typename T>
void Forward(const T* x, const T* residual, const float* gamma, const float* beta, T* y,
             float* mean, float* rstd, const LayerNormShape& shape,
             const ParallelFor& parallel_for) {
  const int64_t width = shape.width;
  const int64_t blocks = (shape.rows + kBlockRows - 1) / kBlockRows;
  Parallel(parallel_for, blocks, 8 * kBlockRows * width, [&](int64_t begin, int64_t end) {
    Buffer<float> buffer;
    float* sum = buffer.Reserve(RoundUp(width, W));
    for (int64_t row = begin * kBlockRows; row < Min(end * kBlockRows, shape.rows); ++row) {
      const int64_t at = row * width;
      RowSum(x + at, residual ? residual + at : nullptr, shape.residual_bias,
             RowFactor(shape.residual_scale, shape.rows_per_sample, row), width, sum);
      vf total = vf{};
      int64_t d = 0;
      for (; d + W <= width; d += W) total += Load(&sum[d]);
      float row_mean = Sum(total);
      for (; d < width; ++d) row_mean += sum[d];
      row_mean /= static_cast<float>(width);
      vf squares = vf{};
      for (d = 0; d + W <= width; d += W) {
        const vf centred = Load(&sum[d]) - row_mean;
        squares += centred * centred;
      }
      float variance = Sum(squares);
      for (; d < width; ++d) variance += (sum[d] - row_mean) * (sum[d] - row_mean);
      const float row_rstd = 1.0f / sqrtf(variance / static_cast<float>(width) + shape.epsilon);
      mean[row] = row_mean;
      rstd[row] = row_rstd;
      for (d = 0; d + W <= width; d += W)
        Store(y + at + d, (Load(&sum[d]) - row_mean) * row_rstd * Load(gamma + d) + Load(beta + d));
      for (; d < width; ++d)
        FromFloat((sum[d] - row_mean) * row_rstd * gamma[d] + beta[d], y + at + d);
    }
  });
}

// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * gamma; dgamma = sum dy * xhat,
// dbeta = sum dy over rows; d residual = f * dx where grad_residual is asked for, and d bias its
// sum over rows where grad_residual_bias is.
template <typename T>
void Backward(const T* x, const T* residual, const float* gamma, const float* mean,
              const float* rstd, const T* grad_y, T* grad_x, T* grad_residual,
              float* grad_residual_bias, float* grad_gamma, float* grad_beta,
              const LayerNormShape& shape, const ParallelFor& parallel_for) {
  const int64_t width = shape.width, padded = RoundUp(width, W);
  const int64_t blocks = (shape.rows + kBlockRows - 1) / kBlockRows;
  // Per block: dgamma, dbeta, and d bias where asked for.
  const int64_t sums = grad_residual_bias ? 3 : 2;
  Buffer<float> partials;
  partials.Zeroed(blocks * sums * padded);
  Parallel(parallel_for, blocks, 12 * kBlockRows * width, [&](int64_t begin, int64_t end) {
    Buffer<float> buffer;
    float* xhat = buffer.Reserve(3 * padded);
    float* g = xhat + padded;
    float* dy = g + padded;
    for (int64_t block = begin; block < end; ++block) {
      float* block_gamma = &partials[block * sums * padded];
      float* block_beta = block_gamma + padded;
      float* block_bias = block_beta + padded;
      const int64_t last = Min((block + 1) * kBlockRows, shape.rows);
      for (int64_t row = block * kBlockRows; row < last; ++row) {
        const int64_t at = row * width;
        const float factor = RowFactor(shape.residual_scale, shape.rows_per_sample, row);
        RowSum(x + at, residual ? residual + at : nullptr, shape.residual_bias, factor, width,
               xhat);
        RowSum(grad_y + at, static_cast<const T*>(nullptr), nullptr, 1.0f, width, dy);
        const float row_mean = mean[row], row_rstd = rstd[row];
        vf g_total = vf{}, gx_total = vf{};
        int64_t d = 0;
        for (; d + W <= width; d += W) {
          const vf h = (Load(&xhat[d]) - row_mean) * row_rstd, dyv = Load(&dy[d]);
          const vf gv = dyv * Load(gamma + d);
          Store(&xhat[d], h);
          Store(&g[d], gv);
          g_total += gv;
          gx_total += gv * h;
          Store(block_gamma + d, Load(block_gamma + d) + dyv * h);
          Store(block_beta + d, Load(block_beta + d) + dyv);
        }
        float g_sum = Sum(g_total), gx_sum = Sum(gx_total);
        for (; d < width; ++d) {
          xhat[d] = (xhat[d] - row_mean) * row_rstd;
          g[d] = dy[d] * gamma[d];
          g_sum += g[d];
          gx_sum += g[d] * xhat[d];
          block_gamma[d] += dy[d] * xhat[d];
          block_beta[d] += dy[d];
        }
        const float g_mean = g_sum / static_cast<float>(width);
        const float gx_mean = gx_sum / static_cast<float>(width);
        for (d = 0; d + W <= width; d += W) {
          const vf dx = (Load(&g[d]) - g_mean - Load(&xhat[d]) * gx_mean) * row_rstd;
          Store(grad_x + at + d, dx);
          if (grad_residual) Store(grad_residual + at + d, dx * factor);
          if (grad_residual_bias) Store(block_bias + d, Load(block_bias + d) + dx * factor);
        }
        for (; d < width; ++d) {
          const float dx = (g[d] - g_mean - xhat[d] * gx_mean) * row_rstd;
          FromFloat(dx, grad_x + at + d);
          if (grad_residual) FromFloat(dx * factor, grad_residual + at + d);
          if (grad_residual_bias) block_bias[d] += dx * factor;
        }
      }
    }
  });
  const float* partial = partials.data();
  SumBlocks(partial, blocks, sums * padded, width, grad_gamma);
  SumBlocks(partial + padded, blocks, sums * padded, width, grad_beta);
  if (grad_residual_bias)
    SumBlocks(partial + 2 * padded, blocks, sums * padded, width, grad_residual_bias);
}

// y = x + f * (residual + b), or f * (residual + b) where x is null; f the row's factor, b the
// residual's bias (or 0). Where scaled_sums is given, it gets the sum over rows of
// f * (residual + b): run on a gradient, that is the gradient of a bias the residual had.
template <typename T>
void Add(const T* x, const T* residual, T* y, float* scaled_sums, const ResidualAddShape& shape,
         const ParallelFor& parallel_for) {
  const int64_t width = shape.width, padded = RoundUp(width, W);
  const int64_t blocks = (shape.rows + kBlockRows - 1) / kBlockRows;
  const float* bias = shape.residual_bias;
  Buffer<float> partials;  // per block, where scaled_sums is asked for
  if (scaled_sums) partials.Zeroed(blocks * padded);
  Parallel(parallel_for, blocks, 2 * kBlockRows * width, [&](int64_t begin, int64_t end) {
    for (int64_t block = begin; block < end; ++block) {
      float* block_sums = scaled_sums ? partials.data() + block * padded : nullptr;
      for (int64_t row = block * kBlockRows; row < Min((block + 1) * kBlockRows, shape.rows);
           ++row) {
        const float factor = RowFactor(shape.residual_scale, shape.rows_per_sample, row);
        const int64_t at = row * width;
        int64_t d = 0;
        for (; d + W <= width; d += W) {
          const vf scaled =
              (bias ? Load(residual + at + d) + Load(bias + d) : Load(residual + at + d)) * factor;
          Store(y + at + d, x ? Load(x + at + d) + scaled : scaled);
          if (block_sums) Store(block_sums + d, Load(block_sums + d) + scaled);
        }
        for (; d < width; ++d) {
          const float scaled = (ToFloat(residual[at + d]) + (bias ? bias[d] : 0.0f)) * factor;
          FromFloat(x ? ToFloat(x[at + d]) + scaled : scaled, y + at + d);
          if (block_sums) block_sums[d] += scaled;
        }
      }
    }
  });
  if (scaled_sums) SumBlocks(partials.data(), blocks, padded, width, scaled_sums);
}

}  // namespace

void LayerNormForward(const float* x, const float* residual, const float* gamma, const float* beta,
                      float* y, float* mean, float* rstd, const LayerNormShape& shape,
                      const ParallelFor& parallel_for) {
  Forward(x, residual, gamma, beta, y, mean, rstd, shape, parallel_for);
}
void LayerNormForward(const uint16_t* x, const uint16_t* residual, const float* gamma,
                      const float* beta, uint16_t* y, float* mean, float* rstd,
                      const LayerNormShape& shape, const ParallelFor& parallel_for) {
  Forward(x, residual, gamma, beta, y, mean, rstd, shape, parallel_for);
}
void LayerNormBackward(const float* x, const float* residual, const float* gamma, const float* mean,
                       const float* rstd, const float* grad_y, float* grad_x, float* grad_residual,
                       float* grad_residual_bias, float* grad_gamma, float* grad_beta,
                       const LayerNormShape& shape, const ParallelFor& parallel_for) {
  Backward(x, residual, gamma, mean, rstd, grad_y, grad_x, grad_residual, grad_residual_bias,
           grad_gamma, grad_beta, shape, parallel_for);
}
void LayerNormBackward(const uint16_t* x, const uint16_t* residual, const float* gamma,
                       const float* mean, const float* rstd, const uint16_t* grad_y,
                       uint16_t* grad_x, uint16_t* grad_residual, float* grad_residual_bias,
                       float* grad_gamma, float* grad_beta, const LayerNormShape& shape,
                       const ParallelFor& parallel_for) {
  Backward(x, residual, gamma, mean, rstd, grad_y, grad_x, grad_residual, grad_residual_bias,
           grad_gamma, grad_beta, shape, parallel_for);
}

void ResidualAdd(const float* x, const float* residual, float* y, float* scaled_sums,
                 const ResidualAddShape& shape, const ParallelFor& parallel_for) {
  Add(x, residual, y, scaled_sums, shape, parallel_for);
}
void ResidualAdd(const uint16_t* x, const uint16_t* residual, uint16_t* y, float* scaled_sums,
                 const ResidualAddShape& shape, const ParallelFor& parallel_for) {
  Add(x, residual, y, scaled_sums, shape, parallel_for);
}

}  // namespace CCT_ISA
}  // namespace cct_kernels
