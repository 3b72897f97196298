// CPU kernels of ddad::bn_stats_loss, DeepInversion's BN-statistics term of one BatchNorm2d input:
//
//   loss = ||mean(x) - running_mean||_2 + ||var(x) - running_var||_2,
//
// mean and biased var per channel over (N, H, W), M = N*H*W elements each.
//
// forward: ONE pass over x. Each thread adds up sum(x - k_c) and sum((x - k_c)^2) per channel in
//   double (k_c = the channel's first element, a shift that keeps E[x^2] - E[x]^2 from cancelling
//   when |mean| >> std), into its own partial row; the rows are added in a fixed order
//   (deterministic for a given thread count). Returns loss, mean, var (fp32, C) and
//   dist = (||mean - rm||, ||var - rv||) (fp32, 2), which the backward reuses.
// backward: ONE pass over x writing dx = a_c + b_c (x - mean_c) in x's dtype and memory format,
//   a_c = g dL/dmean_c / M, b_c = 2 g dL/dvar_c / M, dL/dmean_c = (mean_c - rm_c) / dist_0 and
//   dL/dvar_c = (var_c - rv_c) / dist_1 (0 where a distance is 0, as torch's norm backward).
//
// Layouts are read through strides, never copied: x is seen as [O outer][C channels][L inner]
// (H and W folded into L where the strides allow; N folded in too where it can be), and walked as
// "planes" (runs along L, NCHW) or "rows" (contiguous runs with per-element accumulators:
// channels_last, and NCHW with short maps); see Walk below.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <tuple>
#include <vector>

// The setup.py flags target plain x86-64; clone the hot loops for AVX-512 and AVX2 and let the
// loader pick the best the CPU has (GCC and Clang on Linux x86-64).
#if defined(__x86_64__) && defined(__linux__) && (defined(__GNUC__) || defined(__clang__))
#define DDAD_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define DDAD_SIMD_CLONES
#endif

namespace ddad {
namespace {

constexpr int64_t kGrainElements = 1 << 15;  // elements per thread below which fewer threads run

// x (or dx) as [O = N * Ho][C][L]; element (o, c, l) at outer(o) + c * sC + l * sL.
struct View3 {
  int64_t N, Ho, C, L;
  int64_t sN, sHo, sC, sL;
  int64_t outer(int64_t o) const { return Ho == 1 ? o * sN : (o / Ho) * sN + (o % Ho) * sHo; }
  int64_t O() const { return N * Ho; }
};

// Whether H and W of `t` fold into one dimension of stride sW (or sH when W == 1).
bool hw_folds(const at::Tensor& t) {
  return t.size(2) == 1 || t.size(3) == 1 || t.stride(2) == t.size(3) * t.stride(3);
}

View3 view3(const at::Tensor& t, bool fold_hw, bool fold_n) {
  const int64_t N = t.size(0), C = t.size(1), H = t.size(2), W = t.size(3);
  View3 v{N, H, C, W, t.stride(0), t.stride(2), t.stride(1), t.stride(3)};
  if (fold_hw) {
    v.Ho = 1;
    v.sHo = 0;
    v.L = H * W;
    v.sL = W == 1 ? t.stride(2) : t.stride(3);
  }
  if (fold_n) {  // only valid when Ho == 1 and (L == 1 or sN == L * sL): n becomes part of L
    v.sL = v.L == 1 ? v.sN : v.sL;
    v.L *= v.N;
    v.N = 1;
  }
  return v;
}

bool n_folds(const View3& v) { return v.Ho == 1 && (v.L == 1 || v.N == 1 || v.sN == v.L * v.sL); }

// The views of x (and of dx, when given) in which both can be walked with the same indices.
std::pair<View3, View3> common_views(const at::Tensor& x, const at::Tensor& dx) {
  const bool fold_hw = hw_folds(x) && hw_folds(dx);
  View3 vx = view3(x, fold_hw, false), vd = view3(dx, fold_hw, false);
  const bool fold_n = n_folds(vx) && n_folds(vd);
  return {view3(x, fold_hw, fold_n), view3(dx, fold_hw, fold_n)};
}

// How a kernel walks x: either "planes", one run of L elements per (o, c) (stride sL), or "rows",
// runs of K contiguous elements with a per-element accumulator / coefficient, the elements of
// channel c being group consecutive ones. Rows are (o, j), j < per_outer, at outer(o) + j * step
// in x and at outer(o) + j * dstep in dx (x's step may be 0 where dx's is not: x expanded along N).
//   channels_last (sC == 1):          rows of K = C channels, one per position l (group 1);
//   NCHW with short maps (L < 128):   rows of K = C * L, the whole [C, L] block of one o (group L);
//   anything else:                    planes (NCHW with long maps runs along L; other strides too).
struct Walk {
  bool rows;
  int64_t K, group, per_outer, step, dstep;
};

constexpr int64_t kShortRun = 128;       // planes shorter than this walk as [C, L] rows instead
constexpr int64_t kMaxRowBlock = 16384;  // ... if C * L is at most this (accumulators stay in L2)

Walk choose_walk(const View3& v, const View3& d) {
  if (v.C > 1 && v.sC == 1 && d.sC == 1 && !(v.L > 1 && v.sL == 1)) {
    return {true, v.C, 1, v.L, v.sL, d.sL};
  }
  const auto block = [](const View3& t) { return t.L > 1 && t.sL == 1 && t.sC == t.L; };
  if (v.L < kShortRun && v.C * v.L <= kMaxRowBlock && block(v) && block(d)) {
    return {true, v.C * v.L, v.L, 1, 0, 0};
  }
  return {false, 0, 0, 0, 0, 0};
}

// A per-channel value repeated for each of the `group` consecutive elements of its channel.
template <typename V>
std::vector<V> per_element(const std::vector<V>& per_channel, int64_t group) {
  std::vector<V> out;
  out.reserve(per_channel.size() * static_cast<size_t>(group));
  for (const V& value : per_channel) out.insert(out.end(), static_cast<size_t>(group), value);
  return out;
}

// ---- forward: shifted sums ----------------------------------------------------------------

// sum_i (p[i * stride] - shift) and sum_i (p[i * stride] - shift)^2 over i < n, added to *sum, *sumsq.
template <typename T>
inline void shifted_sums_run(const T* __restrict p, int64_t n, int64_t stride, double shift,
                             double* sum, double* sumsq) {
  constexpr int kLanes = 16;
  double s[kLanes] = {}, q[kLanes] = {};
  int64_t i = 0;
  if (stride == 1) {
    for (; i + kLanes <= n; i += kLanes) {
      for (int j = 0; j < kLanes; ++j) {
        const double v = static_cast<double>(static_cast<float>(p[i + j])) - shift;
        s[j] += v;
        q[j] += v * v;
      }
    }
  }
  double total = 0.0, total_sq = 0.0;
  for (int j = 0; j < kLanes; ++j) {
    total += s[j];
    total_sq += q[j];
  }
  for (; i < n; ++i) {
    const double v = static_cast<double>(static_cast<float>(p[i * stride])) - shift;
    total += v;
    total_sq += v * v;
  }
  *sum += total;
  *sumsq += total_sq;
}

// Planes i in [begin, end), i = o * C + c: sum[c], sumsq[c] += the shifted sums of run (o, c).
template <typename T>
DDAD_SIMD_CLONES void shifted_sums_planes(const T* p, const View3& v, int64_t begin, int64_t end,
                                          const double* shift, double* sum, double* sumsq) {
  for (int64_t i = begin; i < end; ++i) {
    const int64_t o = i / v.C, c = i % v.C;
    shifted_sums_run(p + v.outer(o) + c * v.sC, v.L, v.sL, shift[c], sum + c, sumsq + c);
  }
}

// Rows i in [begin, end) of `walk`: acc[k] += x_k - shift[k], acc_sq[k] += (x_k - shift[k])^2.
template <typename T>
DDAD_SIMD_CLONES void shifted_sums_rows(const T* p, const View3& v, const Walk& walk,
                                        int64_t begin, int64_t end, const double* __restrict shift,
                                        double* __restrict acc, double* __restrict acc_sq) {
  const int64_t K = walk.K;
  for (int64_t i = begin; i < end;) {
    const int64_t o = i / walk.per_outer, j = i % walk.per_outer;
    const int64_t n = std::min(end - i, walk.per_outer - j);
    const T* first = p + v.outer(o) + j * walk.step;
    for (int64_t r = 0; r < n; ++r) {
      const T* __restrict row = first + r * walk.step;
      for (int64_t k = 0; k < K; ++k) {
        const double x = static_cast<double>(static_cast<float>(row[k])) - shift[k];
        acc[k] += x;
        acc_sq[k] += x * x;
      }
    }
    i += n;
  }
}

// Per-channel (sum, sumsq) of x - shift over all of x, as 2*C doubles (sums then sums of squares).
template <typename T>
std::vector<double> channel_sums(const at::Tensor& x, const View3& v, const Walk& walk,
                                 const std::vector<double>& shift) {
  const T* p = x.const_data_ptr<T>();
  const int64_t C = v.C;
  const int64_t nchunks = std::max<int64_t>(
      1, std::min<int64_t>(at::get_num_threads(), x.numel() / kGrainElements));
  const int64_t width = walk.rows ? walk.K : C;  // accumulators per chunk (and per sum)
  std::vector<double> partial(static_cast<size_t>(nchunks * 2 * width), 0.0);
  const std::vector<double> shift_k = walk.rows ? per_element(shift, walk.group) : shift;
  const int64_t items = walk.rows ? v.O() * walk.per_outer : v.O() * C;
  at::parallel_for(0, nchunks, 1, [&](int64_t chunk_begin, int64_t chunk_end) {
    for (int64_t chunk = chunk_begin; chunk < chunk_end; ++chunk) {
      double* sum = partial.data() + chunk * 2 * width;
      const int64_t begin = items * chunk / nchunks, end = items * (chunk + 1) / nchunks;
      if (walk.rows) {
        shifted_sums_rows(p, v, walk, begin, end, shift_k.data(), sum, sum + width);
      } else {
        shifted_sums_planes(p, v, begin, end, shift_k.data(), sum, sum + width);
      }
    }
  });
  // Fixed order: chunks, then the elements of each channel.
  std::vector<double> sums(static_cast<size_t>(2 * C), 0.0);
  for (int64_t chunk = 0; chunk < nchunks; ++chunk) {
    const double* part = partial.data() + chunk * 2 * width;
    for (int64_t half = 0; half < 2; ++half) {
      for (int64_t k = 0; k < width; ++k) {
        sums[half * C + k / (width / C)] += part[half * width + k];
      }
    }
  }
  return sums;
}

// ---- backward: per-channel affine map -------------------------------------------------------

// Planes i in [begin, end): dx = a[c] + b[c] * (x - mean[c]) along run (o, c).
template <typename T>
DDAD_SIMD_CLONES void affine_planes(const T* x, T* dx, const View3& vx, const View3& vd,
                                    int64_t begin, int64_t end, const float* mean, const float* a,
                                    const float* b) {
  for (int64_t i = begin; i < end; ++i) {
    const int64_t o = i / vx.C, c = i % vx.C;
    const T* __restrict xr = x + vx.outer(o) + c * vx.sC;
    T* __restrict dr = dx + vd.outer(o) + c * vd.sC;
    const float m = mean[c], ac = a[c], bc = b[c];
    if (vx.sL == 1 && vd.sL == 1) {
      for (int64_t l = 0; l < vx.L; ++l) {
        dr[l] = static_cast<T>(ac + bc * (static_cast<float>(xr[l]) - m));
      }
    } else {
      for (int64_t l = 0; l < vx.L; ++l) {
        dr[l * vd.sL] = static_cast<T>(ac + bc * (static_cast<float>(xr[l * vx.sL]) - m));
      }
    }
  }
}

// Rows i in [begin, end) of `walk`: dx_k = a[k] + b[k] * (x_k - mean[k]).
template <typename T>
DDAD_SIMD_CLONES void affine_rows(const T* x, T* dx, const View3& vx, const View3& vd,
                                  const Walk& walk, int64_t begin, int64_t end,
                                  const float* __restrict mean, const float* __restrict a,
                                  const float* __restrict b) {
  const int64_t K = walk.K;
  for (int64_t i = begin; i < end;) {
    const int64_t o = i / walk.per_outer, j = i % walk.per_outer;
    const int64_t n = std::min(end - i, walk.per_outer - j);
    for (int64_t r = 0; r < n; ++r) {
      const T* __restrict xr = x + vx.outer(o) + (j + r) * walk.step;
      T* __restrict dr = dx + vd.outer(o) + (j + r) * walk.dstep;
      for (int64_t k = 0; k < K; ++k) {
        dr[k] = static_cast<T>(a[k] + b[k] * (static_cast<float>(xr[k]) - mean[k]));
      }
    }
    i += n;
  }
}

template <typename T>
void channel_affine(const at::Tensor& x, at::Tensor& dx, const View3& vx, const View3& vd,
                    const Walk& walk, const std::vector<float>& mean, const std::vector<float>& a,
                    const std::vector<float>& b) {
  const T* px = x.const_data_ptr<T>();
  T* pd = dx.mutable_data_ptr<T>();
  if (walk.rows) {
    const std::vector<float> mk = per_element(mean, walk.group), ak = per_element(a, walk.group),
                             bk = per_element(b, walk.group);
    const int64_t grain = std::max<int64_t>(1, kGrainElements / walk.K);
    at::parallel_for(0, vx.O() * walk.per_outer, grain, [&](int64_t begin, int64_t end) {
      affine_rows(px, pd, vx, vd, walk, begin, end, mk.data(), ak.data(), bk.data());
    });
  } else {
    const int64_t grain = std::max<int64_t>(1, kGrainElements / std::max<int64_t>(vx.L, 1));
    at::parallel_for(0, vx.O() * vx.C, grain, [&](int64_t begin, int64_t end) {
      affine_planes(px, pd, vx, vd, begin, end, mean.data(), a.data(), b.data());
    });
  }
}

// ---- ops ------------------------------------------------------------------------------------

void check_inputs(const at::Tensor& x, const at::Tensor& running_mean,
                  const at::Tensor& running_var) {
  TORCH_CHECK(x.dim() == 4, "bn_stats_loss expects the (N, C, H, W) input of a BatchNorm2d, got ",
              "a tensor of shape ", x.sizes());
  TORCH_CHECK(x.is_floating_point(), "bn_stats_loss expects a floating-point x, got ",
              x.scalar_type());
  TORCH_CHECK(x.size(0) * x.size(2) * x.size(3) > 0,
              "bn_stats_loss needs at least one element per channel, got x of shape ", x.sizes());
  for (const at::Tensor* t : {&running_mean, &running_var}) {
    TORCH_CHECK(t->dim() == 1 && t->size(0) == x.size(1),
                "bn_stats_loss expects running_mean and running_var of shape (C,) = (",
                x.size(1), ",), got ", t->sizes());
    TORCH_CHECK(t->is_floating_point(), "running statistics must be floating point, got ",
                t->scalar_type());
  }
  for (const at::Tensor* t : {&x, &running_mean, &running_var}) {
    TORCH_CHECK(t->device().is_cpu(), "bn_stats_forward_cpu/bn_stats_backward_cpu run on CPU ",
                "tensors, got one on ", t->device());
  }
}

// A (C,) tensor as doubles, going through fp32 exactly like the eager reference's .float().
std::vector<double> as_doubles(const at::Tensor& t) {
  const at::Tensor f = t.to(at::kFloat).contiguous();
  const float* p = f.const_data_ptr<float>();
  return std::vector<double>(p, p + f.numel());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> bn_stats_forward_cpu(
    const at::Tensor& x, const at::Tensor& running_mean, const at::Tensor& running_var) {
  check_inputs(x, running_mean, running_var);
  const auto [v, unused] = common_views(x, x);
  const Walk walk = choose_walk(v, v);
  const int64_t C = x.size(1);
  const double M = static_cast<double>(x.size(0) * x.size(2) * x.size(3));
  std::vector<double> shift(static_cast<size_t>(C)), sums;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "bn_stats_forward_cpu",
                                  [&] {
                                    const scalar_t* p = x.const_data_ptr<scalar_t>();
                                    for (int64_t c = 0; c < C; ++c) {
                                      shift[c] = static_cast<float>(p[c * x.stride(1)]);
                                    }
                                    sums = channel_sums<scalar_t>(x, v, walk, shift);
                                  });
  const std::vector<double> rm = as_doubles(running_mean), rv = as_doubles(running_var);
  const auto f32 = x.options().dtype(at::kFloat);
  at::Tensor mean = at::empty({C}, f32), var = at::empty({C}, f32), dist = at::empty({2}, f32);
  float* pm = mean.mutable_data_ptr<float>();
  float* pv = var.mutable_data_ptr<float>();
  double dm2 = 0.0, dv2 = 0.0;
  for (int64_t c = 0; c < C; ++c) {
    const double d = sums[c] / M;  // mean - shift
    const double m = shift[c] + d, s2 = std::max(sums[C + c] / M - d * d, 0.0);
    pm[c] = static_cast<float>(m);
    pv[c] = static_cast<float>(s2);
    dm2 += (m - rm[c]) * (m - rm[c]);
    dv2 += (s2 - rv[c]) * (s2 - rv[c]);
  }
  dist.mutable_data_ptr<float>()[0] = static_cast<float>(std::sqrt(dm2));
  dist.mutable_data_ptr<float>()[1] = static_cast<float>(std::sqrt(dv2));
  at::Tensor loss = at::empty({}, f32);
  loss.mutable_data_ptr<float>()[0] = static_cast<float>(std::sqrt(dm2) + std::sqrt(dv2));
  return {loss, mean, var, dist};
}

at::Tensor bn_stats_backward_cpu(const at::Tensor& grad, const at::Tensor& x,
                                 const at::Tensor& mean, const at::Tensor& var,
                                 const at::Tensor& dist, const at::Tensor& running_mean,
                                 const at::Tensor& running_var) {
  check_inputs(x, running_mean, running_var);
  const int64_t C = x.size(1);
  TORCH_CHECK(grad.numel() == 1, "the gradient of the loss must be a scalar, got shape ",
              grad.sizes());
  TORCH_CHECK(mean.numel() == C && var.numel() == C && dist.numel() == 2,
              "bn_stats_backward_cpu expects the mean (C,), var (C,) and dist (2,) the forward "
              "returned; got ",
              mean.sizes(), ", ", var.sizes(), ", ", dist.sizes());
  const double M = static_cast<double>(x.size(0) * x.size(2) * x.size(3));
  const double g = grad.item<double>();
  const std::vector<double> mu = as_doubles(mean), s2 = as_doubles(var), d = as_doubles(dist);
  const std::vector<double> rm = as_doubles(running_mean), rv = as_doubles(running_var);
  const double gm = d[0] > 0.0 ? g / (d[0] * M) : 0.0, gv = d[1] > 0.0 ? 2.0 * g / (d[1] * M) : 0.0;
  std::vector<float> m(C), a(C), b(C);
  for (int64_t c = 0; c < C; ++c) {
    m[c] = static_cast<float>(mu[c]);
    a[c] = static_cast<float>(gm * (mu[c] - rm[c]));
    b[c] = static_cast<float>(gv * (s2[c] - rv[c]));
  }
  at::Tensor dx = at::empty_like(x);
  const auto [vx, vd] = common_views(x, dx);
  const Walk walk = choose_walk(vx, vd);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "bn_stats_backward_cpu",
                                  [&] { channel_affine<scalar_t>(x, dx, vx, vd, walk, m, a, b); });
  return dx;
}

}  // namespace

TORCH_LIBRARY_IMPL(ddad, CPU, m) {
  m.impl("bn_stats_forward_cpu", &bn_stats_forward_cpu);
  m.impl("bn_stats_backward_cpu", &bn_stats_backward_cpu);
}

}  // namespace ddad
