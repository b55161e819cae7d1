// (Residual +) LayerNorm on CUDA, one warp per row, statistics and arithmetic in float32 and the
// tensors in float32, bfloat16 or float16: the formulas of kernels/cpu/layer_norm_isa.cc, so a
// model's blocks normalise alike on either device. The sum x + residual is never rounded to the
// tensors' dtype. The gamma and beta gradients are summed over chunks of rows into a workspace,
// then over the chunks: no atomics, so they are deterministic.
#include <cuda_runtime.h>

#include "elements.cuh"
#include "launchers.h"

namespace {

constexpr int kWarpsPerBlock = 8;
constexpr int kChunkRows = 128;  // rows per partial sum of the parameter gradients
constexpr int kColumnThreads = 256;

__device__ float WarpSum(float value) {
  for (int offset = 16; offset > 0; offset /= 2)
    value += __shfl_xor_sync(0xffffffffu, value, offset);
  return value;
}

// x + residual at element i of the row, in float32.
template <int kCode, typename T>
__device__ float Summed(const T* x, const T* residual, int64_t i) {
  using E = cct_cuda::Element<kCode>;
  return residual == nullptr ? E::Load(x[i]) : E::Load(x[i]) + E::Load(residual[i]);
}

template <int kCode, typename T = typename cct_cuda::Element<kCode>::Storage>
__global__ void __launch_bounds__(32 * kWarpsPerBlock)
    ForwardKernel(const T* __restrict__ x, const T* __restrict__ residual,
                  const float* __restrict__ gamma, const float* __restrict__ beta,
                  T* __restrict__ y, float* __restrict__ mean, float* __restrict__ rstd,
                  int64_t rows, int64_t width, float epsilon) {
  const int64_t row = blockIdx.x * static_cast<int64_t>(kWarpsPerBlock) + threadIdx.x / 32;
  if (row >= rows) return;
  const int lane = threadIdx.x % 32;
  const int64_t at = row * width;
  float total = 0.0f;
  for (int64_t d = lane; d < width; d += 32) total += Summed<kCode>(x, residual, at + d);
  const float row_mean = WarpSum(total) / static_cast<float>(width);
  float squares = 0.0f;
  for (int64_t d = lane; d < width; d += 32) {
    const float centred = Summed<kCode>(x, residual, at + d) - row_mean;
    squares += centred * centred;
  }
  const float row_rstd = 1.0f / sqrtf(WarpSum(squares) / static_cast<float>(width) + epsilon);
  for (int64_t d = lane; d < width; d += 32) {
    const float normalised = (Summed<kCode>(x, residual, at + d) - row_mean) * row_rstd;
    y[at + d] = cct_cuda::Element<kCode>::Store(normalised * gamma[d] + beta[d]);
  }
  if (lane == 0) {
    mean[row] = row_mean;
    rstd[row] = row_rstd;
  }
}

// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * gamma.
template <int kCode, typename T = typename cct_cuda::Element<kCode>::Storage>
__global__ void __launch_bounds__(32 * kWarpsPerBlock)
    InputGradKernel(const T* __restrict__ x, const T* __restrict__ residual,
                    const float* __restrict__ gamma, const float* __restrict__ mean,
                    const float* __restrict__ rstd, const T* __restrict__ grad_y,
                    T* __restrict__ grad_x, int64_t rows, int64_t width) {
  using E = cct_cuda::Element<kCode>;
  const int64_t row = blockIdx.x * static_cast<int64_t>(kWarpsPerBlock) + threadIdx.x / 32;
  if (row >= rows) return;
  const int lane = threadIdx.x % 32;
  const int64_t at = row * width;
  const float row_mean = mean[row], row_rstd = rstd[row];
  float g_sum = 0.0f, gx_sum = 0.0f;
  for (int64_t d = lane; d < width; d += 32) {
    const float g = E::Load(grad_y[at + d]) * gamma[d];
    g_sum += g;
    gx_sum += g * (Summed<kCode>(x, residual, at + d) - row_mean) * row_rstd;
  }
  const float g_mean = WarpSum(g_sum) / static_cast<float>(width);
  const float gx_mean = WarpSum(gx_sum) / static_cast<float>(width);
  for (int64_t d = lane; d < width; d += 32) {
    const float xhat = (Summed<kCode>(x, residual, at + d) - row_mean) * row_rstd;
    const float g = E::Load(grad_y[at + d]) * gamma[d];
    grad_x[at + d] = E::Store((g - g_mean - xhat * gx_mean) * row_rstd);
  }
}

// partials[chunk][0][d] = sum of dy * xhat, partials[chunk][1][d] = sum of dy over the chunk's
// rows (one thread per column).
template <int kCode, typename T = typename cct_cuda::Element<kCode>::Storage>
__global__ void __launch_bounds__(kColumnThreads)
    ParameterPartialsKernel(const T* __restrict__ x, const T* __restrict__ residual,
                            const float* __restrict__ mean, const float* __restrict__ rstd,
                            const T* __restrict__ grad_y, float* __restrict__ partials,
                            int64_t rows, int64_t width) {
  using E = cct_cuda::Element<kCode>;
  const int64_t d = blockIdx.x * static_cast<int64_t>(kColumnThreads) + threadIdx.x;
  if (d >= width) return;
  const int64_t row0 = blockIdx.y * static_cast<int64_t>(kChunkRows);
  const int64_t end = row0 + kChunkRows < rows ? row0 + kChunkRows : rows;
  float gamma_sum = 0.0f, beta_sum = 0.0f;
  for (int64_t row = row0; row < end; ++row) {
    const float dy = E::Load(grad_y[row * width + d]);
    gamma_sum += dy * (Summed<kCode>(x, residual, row * width + d) - mean[row]) * rstd[row];
    beta_sum += dy;
  }
  float* chunk = partials + blockIdx.y * 2 * width;
  chunk[d] = gamma_sum;
  chunk[width + d] = beta_sum;
}

__global__ void __launch_bounds__(kColumnThreads)
    ParameterSumKernel(const float* __restrict__ partials, float* __restrict__ grad_gamma,
                       float* __restrict__ grad_beta, int64_t chunks, int64_t width) {
  const int64_t d = blockIdx.x * static_cast<int64_t>(kColumnThreads) + threadIdx.x;
  if (d >= width) return;
  float gamma_sum = 0.0f, beta_sum = 0.0f;
  for (int64_t c = 0; c < chunks; ++c) {
    gamma_sum += partials[c * 2 * width + d];
    beta_sum += partials[c * 2 * width + width + d];
  }
  grad_gamma[d] = gamma_sum;
  grad_beta[d] = beta_sum;
}

int64_t Chunks(int64_t rows) { return (rows + kChunkRows - 1) / kChunkRows; }
unsigned RowBlocks(int64_t rows) {
  return static_cast<unsigned>((rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
}
unsigned ColumnBlocks(int64_t width) {
  return static_cast<unsigned>((width + kColumnThreads - 1) / kColumnThreads);
}

}  // namespace

extern "C" int cct_cuda_layer_norm_forward(int dtype, const void* x, const void* residual,
                                           const float* gamma, const float* beta, void* y,
                                           float* mean, float* rstd, int64_t rows, int64_t width,
                                           float epsilon, void* stream) {
  return cct_cuda::ForDtype<CCT_ALL_DTYPES>(dtype, [&](auto code) {
    constexpr int kCode = decltype(code)::value;
    using T = typename cct_cuda::Element<kCode>::Storage;
    if (rows == 0) return 0;
    ForwardKernel<kCode>
        <<<RowBlocks(rows), 32 * kWarpsPerBlock, 0, static_cast<cudaStream_t>(stream)>>>(
            static_cast<const T*>(x), static_cast<const T*>(residual), gamma, beta,
            static_cast<T*>(y), mean, rstd, rows, width, epsilon);
    return static_cast<int>(cudaGetLastError());
  });
}

extern "C" int64_t cct_cuda_layer_norm_partials(int64_t rows, int64_t width) {
  return 2 * Chunks(rows) * width;
}

extern "C" int cct_cuda_layer_norm_backward(int dtype, const void* x, const void* residual,
                                            const float* gamma, const float* mean,
                                            const float* rstd, const void* grad_y, void* grad_x,
                                            float* grad_gamma, float* grad_beta, float* partials,
                                            int64_t rows, int64_t width, void* stream) {
  return cct_cuda::ForDtype<CCT_ALL_DTYPES>(dtype, [&](auto code) {
    constexpr int kCode = decltype(code)::value;
    using T = typename cct_cuda::Element<kCode>::Storage;
    const auto s = static_cast<cudaStream_t>(stream);
    const auto* xs = static_cast<const T*>(x);
    const auto* residuals = static_cast<const T*>(residual);
    const auto* dy = static_cast<const T*>(grad_y);
    if (width == 0) return 0;
    if (rows == 0) {  // the parameter gradients of no rows: zeros
      const cudaError_t cleared = cudaMemsetAsync(grad_gamma, 0, width * sizeof(float), s);
      if (cleared != cudaSuccess) return static_cast<int>(cleared);
      return static_cast<int>(cudaMemsetAsync(grad_beta, 0, width * sizeof(float), s));
    }
    InputGradKernel<kCode><<<RowBlocks(rows), 32 * kWarpsPerBlock, 0, s>>>(
        xs, residuals, gamma, mean, rstd, dy, static_cast<T*>(grad_x), rows, width);
    ParameterPartialsKernel<kCode>
        <<<dim3(ColumnBlocks(width), static_cast<unsigned>(Chunks(rows))), kColumnThreads, 0, s>>>(
            xs, residuals, mean, rstd, dy, partials, rows, width);
    ParameterSumKernel<<<ColumnBlocks(width), kColumnThreads, 0, s>>>(
        partials, grad_gamma, grad_beta, Chunks(rows), width);
    return static_cast<int>(cudaGetLastError());
  });
}
