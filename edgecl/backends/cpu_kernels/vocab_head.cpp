// The loss's softmax over the vocabulary (see common.h): log pi(target), the KL to an anchor,
// and their gradient. MLX's own ops took 1.9-2.1 s forward and backward for 8 x 128
// positions here, this 0.5 s (`python benchmarks/adhoc/kernels_ab.py head`).
#include <optional>

#include "common.h"

namespace edgecl {

namespace {

// log sum_j exp(x_j); NaN if any x_j is.
float row_logsumexp(const float* x, int64_t n) {
  float top = -INFINITY;
  int nan = 0;
#pragma omp simd reduction(max : top) reduction(| : nan)
  for (int64_t j = 0; j < n; j++) {
    top = max_of(x[j], top);
    nan |= std::isnan(x[j]);
  }
  if (nan) return NAN;
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < n; j++) sum += fast_exp(x[j] - top);
  return top + std::log(sum);
}

// Inputs: logits [rows, V], targets [rows], and the anchor's log-probs [rows, V] if any.
// Outputs: log pi(target), KL(anchor || pi) (0 without an anchor), and log sum exp(logits).
class TargetLogprobs : public CpuPrimitive {
 public:
  using CpuPrimitive::CpuPrimitive;
  const char* name() const override { return "EdgeclTargetLogprobs"; }

  void eval_cpu(const std::vector<mx::array>& in, std::vector<mx::array>& out) override {
    auto& encoder = prepare(in, out);
    int64_t vocab = in[0].shape(-1), rows = in[0].size() / vocab;
    const float* anchor = in.size() > 2 ? in[2].data<float>() : nullptr;
    encoder.dispatch([x = in[0].data<float>(), t = in[1].data<int32_t>(), anchor,
                      lp = out[0].data<float>(), kl = out[1].data<float>(),
                      lse = out[2].data<float>(), vocab, rows]() {
      for_rows(rows, [=](int64_t a, int64_t b) {
        for (int64_t i = a; i < b; i++) {
          const float* xi = x + i * vocab;
          const float l = lse[i] = row_logsumexp(xi, vocab);
          lp[i] = xi[t[i]] - l;
          float sum = 0.0f;
          if (anchor) {
            const float* ref = anchor + i * vocab;
            // sum p_ref (ref - log pi), with log pi = x - lse as log_softmax computes it, so
            // the KL at the anchor itself is exactly 0
#pragma omp simd reduction(+ : sum)
            for (int64_t j = 0; j < vocab; j++) sum += fast_exp(ref[j]) * (ref[j] - (xi[j] - l));
          }
          kl[i] = sum;
        }
      });
    });
  }

  std::vector<mx::array> vjp(const std::vector<mx::array>& primals,
                             const std::vector<mx::array>& cotangents,
                             const std::vector<int>& argnums,
                             const std::vector<mx::array>& outputs) override;
};

// d(c_lp . lp + c_kl . KL) / d logits = c_lp (onehot - pi) + c_kl (pi - p_ref).
// Inputs: logits, targets, lse, c_lp, c_kl, and the anchor's log-probs if there is one.
class TargetLogprobsGrad : public CpuPrimitive {
 public:
  using CpuPrimitive::CpuPrimitive;
  const char* name() const override { return "EdgeclTargetLogprobsGrad"; }

  void eval_cpu(const std::vector<mx::array>& in, std::vector<mx::array>& out) override {
    auto& encoder = prepare(in, out);
    int64_t vocab = in[0].shape(-1), rows = in[0].size() / vocab;
    const float* anchor = in.size() > 5 ? in[5].data<float>() : nullptr;
    encoder.dispatch([x = in[0].data<float>(), t = in[1].data<int32_t>(),
                      lse = in[2].data<float>(), c_lp = in[3].data<float>(),
                      c_kl = in[4].data<float>(), anchor, g = out[0].data<float>(), vocab,
                      rows]() {
      for_rows(rows, [=](int64_t a, int64_t b) {
        for (int64_t i = a; i < b; i++) {
          const float *xi = x + i * vocab, l = lse[i];
          float* gi = g + i * vocab;
          if (anchor) {
            const float* ref = anchor + i * vocab;
            float k = c_kl[i], w = k - c_lp[i];
            for (int64_t j = 0; j < vocab; j++) gi[j] = w * fast_exp(xi[j] - l) - k * fast_exp(ref[j]);
          } else {
            float w = -c_lp[i];
            for (int64_t j = 0; j < vocab; j++) gi[j] = w * fast_exp(xi[j] - l);
          }
          gi[t[i]] += c_lp[i];
        }
      });
    });
  }
};

std::vector<mx::array> TargetLogprobs::vjp(const std::vector<mx::array>& primals,
                                           const std::vector<mx::array>& cotangents,
                                           const std::vector<int>& argnums,
                                           const std::vector<mx::array>& outputs) {
  auto s = stream();
  auto flat = [&](const mx::array& c) {
    return mx::contiguous(mx::astype(c, mx::float32, s), false, s);
  };
  std::vector<mx::array> in = {primals[0], primals[1], outputs[2], flat(cotangents[0]),
                               flat(cotangents[1])};
  if (primals.size() > 2) in.push_back(primals[2]);
  auto grad = mx::array(primals[0].shape(), mx::float32,
                        std::make_shared<TargetLogprobsGrad>(s), std::move(in));
  std::vector<mx::array> out;
  for (int a : argnums) out.push_back(a == 0 ? grad : mx::zeros_like(primals[a], s));
  return out;
}

// log pi over the last axis (forward only: the anchor's log-probs, held constant).
class LogSoftmax : public CpuPrimitive {
 public:
  using CpuPrimitive::CpuPrimitive;
  const char* name() const override { return "EdgeclLogSoftmax"; }

  void eval_cpu(const std::vector<mx::array>& in, std::vector<mx::array>& out) override {
    auto& encoder = prepare(in, out);
    int64_t vocab = in[0].shape(-1), rows = in[0].size() / vocab;
    encoder.dispatch([x = in[0].data<float>(), y = out[0].data<float>(), vocab, rows]() {
      for_rows(rows, [=](int64_t a, int64_t b) {
        for (int64_t i = a; i < b; i++) {
          const float* xi = x + i * vocab;
          float l = row_logsumexp(xi, vocab);
          for (int64_t j = 0; j < vocab; j++) y[i * vocab + j] = xi[j] - l;
        }
      });
    });
  }
};

}  // namespace

std::vector<mx::array> target_logprobs(const mx::array& logits, const mx::array& targets,
                                       const std::optional<mx::array>& anchor) {
  auto s = mx::default_stream(mx::Device::cpu);
  std::vector<mx::array> in = {row_major(logits, mx::float32, s),
                               row_major(targets, mx::int32, s)};
  if (anchor) in.push_back(row_major(mx::stop_gradient(*anchor, s), mx::float32, s));
  auto shape = targets.shape();
  auto out = mx::array::make_arrays({shape, shape, shape},
                                    {mx::float32, mx::float32, mx::float32},
                                    std::make_shared<TargetLogprobs>(s), in);
  return {out[0], out[1]};
}

mx::array log_softmax(const mx::array& logits) {
  auto s = mx::default_stream(mx::Device::cpu);
  auto x = row_major(mx::stop_gradient(logits, s), mx::float32, s);
  return mx::array(x.shape(), mx::float32, std::make_shared<LogSoftmax>(s), {x});
}

}  // namespace edgecl
