// kernel_ab: two builds of kernels/cpu/kernels_isa.cc (namespaces base and tree, compiled by
// benchmarks/kernel_ab.py) in one program, the attention of each timed against the other's on
// the same inputs, alternately.
//
//   kernel_ab DTYPE PASS BATCH TOKENS HEADS HEAD_DIM KEEP ROUNDS THREADS
//
// DTYPE float32 or bfloat16; PASS forward or backward (the backward of the base build's
// forward). Prints one JSON object: each build's milliseconds per round ("base", "tree"), and
// the largest absolute difference between their outputs ("max_difference": out and the
// log-sum-exp forward, grad_qkv backward). Round r runs base first where r is even, tree first
// where it is odd, so that neither build always follows the other.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "isa_functions.h"
#include "kernels.h"

namespace cct_kernels {
CCT_DECLARE_ISA(base)
CCT_DECLARE_ISA(tree)
#undef CCT_DECLARE_ISA
}  // namespace cct_kernels

namespace {

using cct_kernels::AttentionShape;
using cct_kernels::ParallelFor;

int g_threads = 1;

// The units of a call taken one at a time by g_threads threads, as TensorFlow's pool would.
void RunOnThreads(void*, int64_t count, int64_t, ParallelFor::Body body, const void* context) {
  std::atomic<int64_t> next{0};
  auto work = [&] {
    for (int64_t unit; (unit = next++) < count;) body(context, unit, unit + 1);
  };
  std::vector<std::thread> helpers;
  for (int t = 1; t < g_threads; ++t) helpers.emplace_back(work);
  work();
  for (std::thread& helper : helpers) helper.join();
}

float ToFloat(float x) { return x; }
float ToFloat(uint16_t x) {
  const uint32_t bits = static_cast<uint32_t>(x) << 16;
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}
void FromFloat(float x, float* out) { *out = x; }
void FromFloat(float x, uint16_t* out) {  // truncation: inputs only need to be random
  uint32_t bits;
  memcpy(&bits, &x, sizeof bits);
  *out = static_cast<uint16_t>(bits >> 16);
}

template <typename T>
double MaxDifference(const std::vector<T>& a, const std::vector<T>& b) {
  double largest = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double difference = std::fabs(ToFloat(a[i]) - ToFloat(b[i]));
    largest = difference > largest || std::isnan(difference) ? difference : largest;
  }
  return largest;
}

void PrintTimes(const char* name, const std::vector<double>& times) {
  printf("\"%s\": [", name);
  for (size_t i = 0; i < times.size(); ++i) printf(i ? ", %.4f" : "%.4f", times[i]);
  printf("], ");
}

template <typename T>
void Compare(bool backward, const AttentionShape& s, int rounds) {
  const int64_t width = s.heads * s.head_dim, rows = s.batch * s.tokens;
  std::mt19937 generator(0);
  std::normal_distribution<float> normal;
  std::vector<T> qkv(rows * 3 * width), grad_out(rows * width);
  for (T& x : qkv) FromFloat(normal(generator), &x);
  for (T& x : grad_out) FromFloat(normal(generator), &x);
  std::vector<T> out[2] = {std::vector<T>(rows * width), std::vector<T>(rows * width)};
  std::vector<T> grad_qkv[2] = {std::vector<T>(qkv.size()), std::vector<T>(qkv.size())};
  std::vector<float> logsumexp[2] = {std::vector<float>(s.batch * s.heads * s.tokens),
                                     std::vector<float>(s.batch * s.heads * s.tokens)};
  // Index 0: the base build, 1: the tree build.
  typedef void (*Forward)(const T*, T*, float*, const AttentionShape&, const ParallelFor&);
  typedef void (*Backward)(const T*, const T*, const float*, const T*, T*, const AttentionShape&,
                           const ParallelFor&);
  const Forward forward[2] = {cct_kernels::base::AttentionForward,
                              cct_kernels::tree::AttentionForward};
  const Backward backward_of[2] = {cct_kernels::base::AttentionBackward,
                                   cct_kernels::tree::AttentionBackward};
  const ParallelFor parallel_for{RunOnThreads, nullptr};
  forward[0](qkv.data(), out[0].data(), logsumexp[0].data(), s, parallel_for);

  auto run = [&](int build) {
    const auto start = std::chrono::steady_clock::now();
    if (backward)  // both from the base build's forward
      backward_of[build](qkv.data(), out[0].data(), logsumexp[0].data(), grad_out.data(),
                         grad_qkv[build].data(), s, parallel_for);
    else
      forward[build](qkv.data(), out[build].data(), logsumexp[build].data(), s, parallel_for);
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
        .count();
  };
  run(0), run(1);  // warm-up: scratch buffers, page faults
  std::vector<double> times[2];
  for (int round = 0; round < rounds; ++round) {
    const int first = round % 2;
    times[first].push_back(run(first));
    times[1 - first].push_back(run(1 - first));
  }
  const double difference =
      backward ? MaxDifference(grad_qkv[0], grad_qkv[1])
               : fmax(MaxDifference(out[0], out[1]), MaxDifference(logsumexp[0], logsumexp[1]));
  printf("{");
  PrintTimes("base", times[0]);
  PrintTimes("tree", times[1]);
  printf("\"max_difference\": %.9g}\n", difference);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 10) {
    fprintf(stderr,
            "usage: kernel_ab DTYPE PASS BATCH TOKENS HEADS HEAD_DIM KEEP ROUNDS THREADS\n");
    return 2;
  }
  const std::string dtype = argv[1], pass = argv[2];
  AttentionShape shape{atoll(argv[3]), atoll(argv[4]), atoll(argv[5]), atoll(argv[6]), 0.0f};
  shape.scale = 1.0f / std::sqrt(static_cast<float>(shape.head_dim));
  shape.keep = static_cast<float>(atof(argv[7]));
  shape.seed0 = 1, shape.seed1 = 2;
  const int rounds = atoi(argv[8]);
  g_threads = atoi(argv[9]);
  if ((dtype != "float32" && dtype != "bfloat16") || (pass != "forward" && pass != "backward") ||
      shape.batch < 1 || shape.tokens < 1 || shape.heads < 1 || shape.head_dim < 1 ||
      !(shape.keep > 0.0f && shape.keep <= 1.0f) || rounds < 1 || g_threads < 1) {
    fprintf(stderr, "kernel_ab: bad arguments\n");
    return 2;
  }
  if (dtype == "float32") Compare<float>(pass == "backward", shape, rounds);
  if (dtype == "bfloat16") Compare<uint16_t>(pass == "backward", shape, rounds);
  return 0;
}
