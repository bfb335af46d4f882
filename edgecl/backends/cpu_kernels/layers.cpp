// SwiGLU and the causal softmax of attention as MLX primitives for the CPU (see common.h).
#include "common.h"

namespace edgecl {

namespace {

inline float sigmoid(float x) { return 1.0f / (1.0f + fast_exp(-x)); }

// Inputs: gate, up (same shape). Output: silu(gate) * up.
class Swiglu : public CpuPrimitive {
 public:
  using CpuPrimitive::CpuPrimitive;
  const char* name() const override { return "EdgeclSwiglu"; }
  void eval_cpu(const std::vector<mx::array>& in, std::vector<mx::array>& out) override {
    auto& encoder = prepare(in, out);
    encoder.dispatch([g = in[0].data<float>(), u = in[1].data<float>(),
                      y = out[0].data<float>(), n = (int64_t)out[0].size()]() {
      for_chunks(n, [=](int64_t a, int64_t b) {
        for (int64_t i = a; i < b; i++) y[i] = g[i] * sigmoid(g[i]) * u[i];
      });
    });
  }
  std::vector<mx::array> vjp(const std::vector<mx::array>&, const std::vector<mx::array>&,
                             const std::vector<int>&, const std::vector<mx::array>&) override;
};

// Inputs: gate, up, cotangent. Outputs: d gate, d up.
class SwigluGrad : public CpuPrimitive {
 public:
  using CpuPrimitive::CpuPrimitive;
  const char* name() const override { return "EdgeclSwigluGrad"; }
  void eval_cpu(const std::vector<mx::array>& in, std::vector<mx::array>& out) override {
    auto& encoder = prepare(in, out);
    encoder.dispatch([g = in[0].data<float>(), u = in[1].data<float>(), c = in[2].data<float>(),
                      dg = out[0].data<float>(), du = out[1].data<float>(),
                      n = (int64_t)in[0].size()]() {
      for_chunks(n, [=](int64_t a, int64_t b) {
        for (int64_t i = a; i < b; i++) {
          float s = sigmoid(g[i]);
          du[i] = c[i] * g[i] * s;
          dg[i] = c[i] * u[i] * s * (1.0f + g[i] * (1.0f - s));
        }
      });
    });
  }
};

std::vector<mx::array> Swiglu::vjp(const std::vector<mx::array>& primals,
                                   const std::vector<mx::array>& cotangents,
                                   const std::vector<int>& argnums,
                                   const std::vector<mx::array>&) {
  auto s = stream();
  auto grads = mx::array::make_arrays(
      {primals[0].shape(), primals[0].shape()}, {mx::float32, mx::float32},
      std::make_shared<SwigluGrad>(s),
      {primals[0], primals[1], row_major(cotangents[0], mx::float32, s)});
  std::vector<mx::array> out;
  for (int a : argnums) out.push_back(grads[a]);
  return out;
}

// softmax over the last axis of scores [..., queries, keys], where query i sees keys
// j <= i + keys - queries (the causal mask after a cached prefix); the rest get 0.
class CausalSoftmax : public CpuPrimitive {
 public:
  CausalSoftmax(mx::Stream s, int queries) : CpuPrimitive(s), queries_(queries) {}
  const char* name() const override { return "EdgeclCausalSoftmax"; }
  void eval_cpu(const std::vector<mx::array>& in, std::vector<mx::array>& out) override {
    auto& encoder = prepare(in, out);
    int64_t keys = in[0].shape(-1), rows = in[0].size() / keys;
    encoder.dispatch([x = in[0].data<float>(), p = out[0].data<float>(), keys, rows,
                      queries = (int64_t)queries_]() {
      for_rows(rows, [=](int64_t a, int64_t b) {
        for (int64_t r = a; r < b; r++) {
          int64_t seen = r % queries + keys - queries + 1;
          const float* xr = x + r * keys;
          float* pr = p + r * keys;
          float top = -INFINITY;
#pragma omp simd reduction(max : top)
          for (int64_t j = 0; j < seen; j++) top = max_of(xr[j], top);
          float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
          for (int64_t j = 0; j < seen; j++) sum += (pr[j] = fast_exp(xr[j] - top));
          float inv = 1.0f / sum;
          for (int64_t j = 0; j < seen; j++) pr[j] *= inv;
          for (int64_t j = seen; j < keys; j++) pr[j] = 0.0f;
        }
      });
    });
  }
  std::vector<mx::array> vjp(const std::vector<mx::array>&, const std::vector<mx::array>&,
                             const std::vector<int>&, const std::vector<mx::array>&) override;

 private:
  int queries_;
};

// Inputs: probs, cotangent. Output: probs * (c - sum(c * probs)) over the last axis.
class SoftmaxGrad : public CpuPrimitive {
 public:
  using CpuPrimitive::CpuPrimitive;
  const char* name() const override { return "EdgeclSoftmaxGrad"; }
  void eval_cpu(const std::vector<mx::array>& in, std::vector<mx::array>& out) override {
    auto& encoder = prepare(in, out);
    int64_t keys = in[0].shape(-1), rows = in[0].size() / keys;
    encoder.dispatch([p = in[0].data<float>(), c = in[1].data<float>(),
                      d = out[0].data<float>(), keys, rows]() {
      for_rows(rows, [=](int64_t a, int64_t b) {
        for (int64_t r = a; r < b; r++) {
          const float *pr = p + r * keys, *cr = c + r * keys;
          float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
          for (int64_t j = 0; j < keys; j++) dot += pr[j] * cr[j];
          for (int64_t j = 0; j < keys; j++) d[r * keys + j] = pr[j] * (cr[j] - dot);
        }
      });
    });
  }
};

std::vector<mx::array> CausalSoftmax::vjp(const std::vector<mx::array>& primals,
                                          const std::vector<mx::array>& cotangents,
                                          const std::vector<int>&,
                                          const std::vector<mx::array>& outputs) {
  auto s = stream();
  return {mx::array(primals[0].shape(), mx::float32, std::make_shared<SoftmaxGrad>(s),
                    {outputs[0], row_major(cotangents[0], mx::float32, s)})};
}

}  // namespace

mx::array swiglu(const mx::array& gate, const mx::array& up) {
  auto s = mx::default_stream(mx::Device::cpu);
  auto g = row_major(gate, mx::float32, s), u = row_major(up, mx::float32, s);
  return mx::array(g.shape(), mx::float32, std::make_shared<Swiglu>(s), {g, u});
}

mx::array causal_softmax(const mx::array& scores, int queries) {
  auto s = mx::default_stream(mx::Device::cpu);
  auto x = row_major(scores, mx::float32, s);
  return mx::array(x.shape(), mx::float32, std::make_shared<CausalSoftmax>(s, queries), {x});
}

}  // namespace edgecl
