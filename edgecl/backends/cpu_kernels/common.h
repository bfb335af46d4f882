// edgecl's CPU kernels for MLX: the loops that MLX's CPU backend runs one element at a time
// on one core (exp above all), as MLX primitives that split rows over the cores and use an
// exp the compiler vectorises. Built by scripts/build_kernels.sh into edgecl/backends/;
// edgecl/backends/kernels.py falls back to MLX's own ops when they are missing.
#pragma once

#include <algorithm>
#include <optional>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>
#ifdef __linux__
#include <sched.h>
#endif

#include "mlx/backend/cpu/encoder.h"
#include "mlx/mlx.h"
#include "mlx/primitives.h"

namespace edgecl {

namespace mx = mlx::core;

// a > b ? a : b (NaN a gives b): unlike std::fmax, a compare the compiler vectorises instead
// of a call into libm.
inline float max_of(float a, float b) { return a > b ? a : b; }

// exp(x) as 2^n p(r) with x = n ln2 + r, |r| <= ln2 / 2; relative error about 2e-7; 0 below
// -87 (a masked score, -inf). Branch free and call free, so that the loops that call it
// vectorise. NaN stays NaN.
inline float fast_exp(float in) {
  float x = in < -87.0f ? -87.0f : (in > 88.0f ? 88.0f : in);
  float n = std::nearbyint(x * 1.44269504088896341f);
  float r = x - n * 0.693145751953125f - n * 1.428606765330187e-06f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return in < -87.0f ? 0.0f : p * scale;
}

// The cores this process may run on (a rank of `learn --ranks 2` is pinned to one).
inline int64_t cores() {
#ifdef __linux__
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
#endif
  return std::max(1u, std::thread::hardware_concurrency());
}

// f(first, last) over [0, rows) split across the cores.
template <typename F>
void for_rows(int64_t rows, F f) {
  static const int64_t available = cores();
  int64_t threads = std::min(rows, available);
  if (threads <= 1) return f(0, rows);
  std::vector<std::thread> pool;
  int64_t per = (rows + threads - 1) / threads;
  for (int64_t a = 0; a < rows; a += per) pool.emplace_back(f, a, std::min(rows, a + per));
  for (auto& t : pool) t.join();
}

// The same over elements, in chunks of 4096 so that small arrays stay on one thread.
template <typename F>
void for_chunks(int64_t n, F f) {
  const int64_t chunk = 4096;
  for_rows((n + chunk - 1) / chunk,
           [=](int64_t a, int64_t b) { f(a * chunk, std::min(n, b * chunk)); });
}

inline mx::array row_major(const mx::array& a, mx::Dtype dtype, mx::Stream s) {
  return mx::contiguous(mx::astype(a, dtype, s), false, s);
}

class CpuPrimitive : public mx::Primitive {
 public:
  using mx::Primitive::Primitive;
  void eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) override {
    throw std::runtime_error("edgecl's kernels run on the CPU only");
  }

 protected:
  // This stream's CPU encoder, with the inputs registered and the outputs allocated.
  mx::cpu::CommandEncoder& prepare(const std::vector<mx::array>& in,
                                   std::vector<mx::array>& out) {
    auto& encoder = mx::cpu::get_command_encoder(stream());
    for (auto& a : in) encoder.set_input_array(a);
    for (auto& a : out) {
      a.set_data(mx::allocator::malloc(a.nbytes()));
      encoder.set_output_array(a);
    }
    return encoder;
  }
};

std::vector<mx::array> target_logprobs(const mx::array& logits, const mx::array& targets,
                                       const std::optional<mx::array>& anchor);
mx::array log_softmax(const mx::array& logits);
mx::array swiglu(const mx::array& gate, const mx::array& up);
mx::array causal_softmax(const mx::array& scores, int queries);

}  // namespace edgecl
