// cct_cpu_kernels: the CPU kernels of kernels/cpu as a program, without TensorFlow, so that they
// can run under an emulated CPU (QEMU's user mode: `qemu-x86_64 -cpu Haswell` has AVX2 and no
// AVX-512) and be compared with a reference by tests/test_kernel_isas.py. CMake builds it from
// the same per-ISA objects as the op library, dispatcher included.
//
//   cct_cpu_kernels isa
//       prints the instruction set the dispatcher picked, and on a second line why
//       CCT_FAST_KERNEL_ISA was not followed, if it was not
//   cct_cpu_kernels attention DTYPE BATCH TOKENS HEADS HEAD_DIM SCALE KEEP SEED0 SEED1 FOLDER
//       qkv, grad_out, and mask if the folder holds one (batch x tokens bytes, nonzero where the
//       token is real) -> out, logsumexp, grad_qkv
//   cct_cpu_kernels pool BATCH TOKENS DIM FOLDER
//       tokens, kernel, bias, grad_out -> out, weights, grad_tokens, grad_kernel, grad_bias
//   cct_cpu_kernels layer_norm DTYPE ROWS WIDTH EPSILON RESIDUAL FOLDER
//       x, residual (RESIDUAL 1), gamma, beta, grad_y -> y, mean, rstd, grad_x, grad_gamma,
//       grad_beta
//   cct_cpu_kernels bias_gelu DTYPE ROWS WIDTH FOLDER
//       x, bias, grad_y -> y, grad_x, grad_bias
//
// Each name is a file of FOLDER holding the array's raw little-endian elements in the layouts
// of kernels/cpu/kernels.h: DTYPE float32, or bfloat16 as its 16-bit words, for the tensors the
// kernels take in that type; float32 for everything else. Exits 2 on a bad call or file.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <string>
#include <vector>

#include "kernels.h"

namespace {

[[noreturn]] void Fail(const std::string& message) {
  fprintf(stderr, "cct_cpu_kernels: %s\n", message.c_str());
  exit(2);
}

// One task per unit, in order: the kernels' splitting is exercised without threads.
void RunUnitByUnit(void*, int64_t count, int64_t, cct_kernels::ParallelFor::Body body,
                   const void* context) {
  for (int64_t unit = 0; unit < count; ++unit) body(context, unit, unit + 1);
}
const cct_kernels::ParallelFor kSerial = {RunUnitByUnit, nullptr};

struct Folder {
  std::string path;

  template <typename T>
  std::vector<T> Read(const char* name, int64_t count) const {
    const std::string file = path + "/" + name;
    FILE* in = fopen(file.c_str(), "rb");
    if (in == nullptr) Fail("cannot open " + file);
    std::vector<T> values(count + 1);  // one more: a longer file is detected, not truncated
    const size_t read = fread(values.data(), sizeof(T), values.size(), in);
    fclose(in);
    if (read != static_cast<size_t>(count)) {
      Fail(file + ": expected " + std::to_string(count) + " elements of " +
           std::to_string(sizeof(T)) + " bytes, found " +
           (read > static_cast<size_t>(count) ? "more" : std::to_string(read)));
    }
    values.pop_back();
    return values;
  }

  bool Has(const char* name) const {
    FILE* in = fopen((path + "/" + name).c_str(), "rb");
    if (in != nullptr) fclose(in);
    return in != nullptr;
  }

  template <typename T>
  void Write(const char* name, const std::vector<T>& values) const {
    const std::string file = path + "/" + name;
    FILE* out = fopen(file.c_str(), "wb");
    if (out == nullptr || fwrite(values.data(), sizeof(T), values.size(), out) != values.size())
      Fail("cannot write " + file);
    fclose(out);
  }
};

int64_t Integer(const char* text) {
  char* end = nullptr;
  const long long value = strtoll(text, &end, 10);
  if (*text == '\0' || *end != '\0' || value < 0) Fail(std::string("not a count: ") + text);
  return value;
}

double Real(const char* text) {
  char* end = nullptr;
  const double value = strtod(text, &end);
  if (*text == '\0' || *end != '\0') Fail(std::string("not a number: ") + text);
  return value;
}

template <typename T>
void Attention(char** args) {
  cct_kernels::AttentionShape shape;
  shape.batch = Integer(args[0]);
  shape.tokens = Integer(args[1]);
  shape.heads = Integer(args[2]);
  shape.head_dim = Integer(args[3]);
  shape.scale = static_cast<float>(Real(args[4]));
  shape.keep = static_cast<float>(Real(args[5]));
  shape.seed0 = static_cast<uint32_t>(Integer(args[6]));
  shape.seed1 = static_cast<uint32_t>(Integer(args[7]));
  const Folder folder{args[8]};
  const int64_t rows = shape.batch * shape.tokens, width = shape.heads * shape.head_dim;
  const std::vector<T> qkv = folder.Read<T>("qkv", rows * 3 * width);
  const std::vector<T> grad_out = folder.Read<T>("grad_out", rows * width);
  const std::vector<uint8_t> mask =
      folder.Has("mask") ? folder.Read<uint8_t>("mask", rows) : std::vector<uint8_t>();
  if (!mask.empty()) shape.mask = mask.data();
  std::vector<T> out(rows * width), grad_qkv(rows * 3 * width);
  std::vector<float> logsumexp(rows * shape.heads);
  cct_kernels::AttentionForward(qkv.data(), out.data(), logsumexp.data(), shape, kSerial);
  cct_kernels::AttentionBackward(qkv.data(), out.data(), logsumexp.data(), grad_out.data(),
                                 grad_qkv.data(), shape, kSerial);
  folder.Write("out", out);
  folder.Write("logsumexp", logsumexp);
  folder.Write("grad_qkv", grad_qkv);
}

void Pool(char** args) {
  const cct_kernels::PoolShape shape = {Integer(args[0]), Integer(args[1]), Integer(args[2])};
  const Folder folder{args[3]};
  const int64_t rows = shape.batch * shape.tokens;
  const std::vector<float> tokens = folder.Read<float>("tokens", rows * shape.dim);
  const std::vector<float> kernel = folder.Read<float>("kernel", shape.dim);
  const std::vector<float> bias = folder.Read<float>("bias", 1);
  const std::vector<float> grad_out = folder.Read<float>("grad_out", shape.batch * shape.dim);
  std::vector<float> out(shape.batch * shape.dim), weights(rows), grad_tokens(rows * shape.dim);
  std::vector<float> grad_kernel(shape.dim), grad_bias(1);
  cct_kernels::SequencePoolForward(tokens.data(), kernel.data(), bias[0], out.data(),
                                   weights.data(), shape, kSerial);
  cct_kernels::SequencePoolBackward(tokens.data(), kernel.data(), weights.data(), grad_out.data(),
                                    grad_tokens.data(), grad_kernel.data(), grad_bias.data(), shape,
                                    kSerial);
  folder.Write("out", out);
  folder.Write("weights", weights);
  folder.Write("grad_tokens", grad_tokens);
  folder.Write("grad_kernel", grad_kernel);
  folder.Write("grad_bias", grad_bias);
}

template <typename T>
void LayerNorm(char** args) {
  cct_kernels::LayerNormShape shape;
  shape.rows = Integer(args[0]);
  shape.width = Integer(args[1]);
  shape.epsilon = static_cast<float>(Real(args[2]));
  const bool with_residual = Integer(args[3]) != 0;
  const Folder folder{args[4]};
  const int64_t size = shape.rows * shape.width;
  const std::vector<T> x = folder.Read<T>("x", size);
  const std::vector<T> residual = with_residual ? folder.Read<T>("residual", size) : x;
  const std::vector<float> gamma = folder.Read<float>("gamma", shape.width);
  const std::vector<float> beta = folder.Read<float>("beta", shape.width);
  const std::vector<T> grad_y = folder.Read<T>("grad_y", size);
  const T* residual_data = with_residual ? residual.data() : nullptr;
  std::vector<T> y(size), grad_x(size);
  std::vector<float> mean(shape.rows), rstd(shape.rows), grad_gamma(shape.width);
  std::vector<float> grad_beta(shape.width);
  cct_kernels::LayerNormForward(x.data(), residual_data, gamma.data(), beta.data(), y.data(),
                                mean.data(), rstd.data(), shape, kSerial);
  cct_kernels::LayerNormBackward(x.data(), residual_data, gamma.data(), mean.data(), rstd.data(),
                                 grad_y.data(), grad_x.data(), nullptr, nullptr, grad_gamma.data(),
                                 grad_beta.data(), shape, kSerial);
  folder.Write("y", y);
  folder.Write("mean", mean);
  folder.Write("rstd", rstd);
  folder.Write("grad_x", grad_x);
  folder.Write("grad_gamma", grad_gamma);
  folder.Write("grad_beta", grad_beta);
}

template <typename T>
void BiasGelu(char** args) {
  const cct_kernels::BiasGeluShape shape = {Integer(args[0]), Integer(args[1])};
  const Folder folder{args[2]};
  const int64_t size = shape.rows * shape.width;
  const std::vector<T> x = folder.Read<T>("x", size);
  const std::vector<float> bias = folder.Read<float>("bias", shape.width);
  const std::vector<T> grad_y = folder.Read<T>("grad_y", size);
  std::vector<T> y(size), grad_x(size);
  std::vector<float> grad_bias(shape.width);
  cct_kernels::BiasGeluForward(x.data(), bias.data(), y.data(), shape, kSerial);
  cct_kernels::BiasGeluBackward(x.data(), bias.data(), grad_y.data(), grad_x.data(),
                                grad_bias.data(), shape, kSerial);
  folder.Write("y", y);
  folder.Write("grad_x", grad_x);
  folder.Write("grad_bias", grad_bias);
}

// The float32 or the bfloat16 form of a command, as DTYPE says.
void ByDtype(const std::string& dtype, void (*float32)(char**), void (*bfloat16)(char**),
             char** args) {
  if (dtype == "float32") return float32(args);
  if (dtype == "bfloat16") return bfloat16(args);
  Fail("DTYPE must be float32 or bfloat16, got " + dtype);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string command = argc > 1 ? argv[1] : "";
  if (command == "isa" && argc == 2) {
    printf("%s\n", cct_kernels::KernelIsa());
    if (cct_kernels::KernelIsaError() != nullptr) printf("%s\n", cct_kernels::KernelIsaError());
  } else if (command == "attention" && argc == 12) {
    ByDtype(argv[2], Attention<float>, Attention<uint16_t>, argv + 3);
  } else if (command == "pool" && argc == 6) {
    Pool(argv + 2);
  } else if (command == "layer_norm" && argc == 8) {
    ByDtype(argv[2], LayerNorm<float>, LayerNorm<uint16_t>, argv + 3);
  } else if (command == "bias_gelu" && argc == 6) {
    ByDtype(argv[2], BiasGelu<float>, BiasGelu<uint16_t>, argv + 3);
  } else {
    Fail("usage: see the head of kernels/harness/cpu_kernels_main.cc");
  }
  return 0;
}
