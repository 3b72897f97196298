// ddad::l1_discrepancy on CPU: loss = mean(|t - s|), and its backward
// (grad_t, grad_s) = (sign(t - s) * g / numel, -sign(t - s) * g / numel), both in one pass.
//
// t and s are read once each as flat arrays in a shared memory layout (see l1_discrepancy.h), so
// channels_last maps are never copied to contiguous. The forward accumulates in fp32 with a fixed
// reduction tree: 32 lanes per block of 1024 elements, blocks into a per-chunk set of 32 lanes, the
// lanes folded pairwise, one partial per chunk of 32768 elements, partials summed pairwise. The
// chunking does not depend on the number of threads, so the result is bitwise the same run to run
// and for any torch.get_num_threads(). Chunks are handed out to torch's intra-op threads by an
// OpenMP loop with a dynamic schedule, so a core busy with another process holds no one up.
//
// The inner loops have two implementations with the same arithmetic in the same order, hence
// bitwise-identical results: AVX2 (+F16C for float16) intrinsics, chosen at run time where the CPU has
// them, and a portable loop the compiler may vectorise. DDAD_CPU_GENERIC=1 forces the portable one
// (the tests compare the two).
#include "l1_discrepancy.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <c10/util/SmallVector.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <tuple>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define DDAD_L1_AVX2 1
#endif

namespace ddad::l1 {

void check_inputs(const at::Tensor& t, const at::Tensor& s, const char* op) {
  TORCH_CHECK(t.sizes() == s.sizes(), op, ": t and s must have the same shape, got ", t.sizes(),
              " and ", s.sizes());
  TORCH_CHECK(t.device() == s.device(), op, ": t and s must be on the same device, got ",
              t.device(), " and ", s.device());
  TORCH_CHECK(t.scalar_type() == s.scalar_type(), op, ": t and s must have the same dtype, got ",
              t.scalar_type(), " and ", s.scalar_type(), " (cast one of them first)");
  const auto dtype = t.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kBFloat16 || dtype == at::kHalf, op,
              ": t and s must be float32, bfloat16 or float16, got ", dtype);
}

at::Tensor checked_grad(const at::Tensor& grad, const at::Tensor& t) {
  TORCH_CHECK(grad.numel() == 1, "ddad::l1_discrepancy_backward: grad must be the gradient of the ",
              "scalar loss (one element), got shape ", grad.sizes());
  TORCH_CHECK(grad.device() == t.device(), "ddad::l1_discrepancy_backward: grad must be on the ",
              "inputs' device ", t.device(), ", got ", grad.device());
  return grad.to(at::kFloat).reshape({});
}

bool same_dense_layout(const at::Tensor& a, const at::Tensor& b) {
  if (!a.is_non_overlapping_and_dense() || !b.is_non_overlapping_and_dense()) {
    return false;
  }
  for (int64_t d = 0; d < a.dim(); ++d) {
    if (a.size(d) > 1 && a.stride(d) != b.stride(d)) {
      return false;
    }
  }
  return true;
}

FlatPair in_common_layout(const at::Tensor& t, const at::Tensor& s) {
  if (same_dense_layout(t, s)) {
    return {t, s};
  }
  at::Tensor tw = t.is_non_overlapping_and_dense() ? t : at::empty_like(t).copy_(t);
  at::Tensor sw = same_dense_layout(s, tw) ? s : at::empty_like(tw).copy_(s);
  return {tw, sw};
}

at::Tensor kernel_target(const at::Tensor& out, const at::Tensor& like) {
  return same_dense_layout(out, like) ? out : at::empty_like(like);
}

void copy_from_target(at::Tensor& out, const at::Tensor& target) {
  if (target.defined() && !target.is_same(out)) {
    out.copy_(target);
  }
}

}  // namespace ddad::l1

namespace {

constexpr int64_t kLanes = 32;     // independent fp32 accumulators (four 8-wide AVX2 registers)
constexpr int64_t kBlock = 1024;   // elements summed into fresh lanes before joining the chunk's
constexpr int64_t kChunk = 32768;  // elements per partial sum (and per parallel task)

inline float to_float(float x) { return x; }
inline float to_float(c10::BFloat16 x) { return static_cast<float>(x); }
inline float to_float(c10::Half x) { return static_cast<float>(x); }

// Pairwise fold of the 32 lanes: lane j += lane j + w for w = 16, 8, 4, 2, 1.
inline float fold_lanes(float* lanes) {
  for (int64_t w = kLanes / 2; w > 0; w /= 2) {
    for (int64_t j = 0; j < w; ++j) {
      lanes[j] += lanes[j + w];
    }
  }
  return lanes[0];
}

// Scalar tail of a block: element i of [0, m) goes to lane i % 32 (the main loop's order).
template <typename T>
inline void tail_into_lanes(const T* t, const T* s, int64_t from, int64_t m, float* acc) {
  for (int64_t i = from; i < m; ++i) {
    acc[i - from] += std::fabs(to_float(t[i]) - to_float(s[i]));
  }
}

// sum |t - s| over n <= kChunk elements (portable version).
template <typename T>
float chunk_sum_generic(const T* t, const T* s, int64_t n) {
  float chunk[kLanes] = {};
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t m = std::min(kBlock, n - b);
    const T* tb = t + b;
    const T* sb = s + b;
    float acc[kLanes] = {};
    int64_t i = 0;
    for (; i + kLanes <= m; i += kLanes) {
      for (int64_t j = 0; j < kLanes; ++j) {
        acc[j] += std::fabs(to_float(tb[i + j]) - to_float(sb[i + j]));
      }
    }
    tail_into_lanes(tb, sb, i, m, acc);
    for (int64_t j = 0; j < kLanes; ++j) {
      chunk[j] += acc[j];
    }
  }
  return fold_lanes(chunk);
}

// grad_t, grad_s over n elements (portable version); a null output is skipped.
template <typename T>
void chunk_grad_generic(const T* t, const T* s, T* gt, T* gs, int64_t n, T pos, T neg) {
  const T zero(0.0f);
  for (int64_t i = 0; i < n; ++i) {
    const float d = to_float(t[i]) - to_float(s[i]);
    const bool p = d > 0.0f;
    const bool q = d < 0.0f;  // neither for d == 0 and NaN: torch.sign gives 0 for both
    if (gt != nullptr) {
      gt[i] = p ? pos : (q ? neg : zero);
    }
    if (gs != nullptr) {
      gs[i] = p ? neg : (q ? pos : zero);
    }
  }
}

#ifdef DDAD_L1_AVX2

#define DDAD_AVX2 __attribute__((target("avx2,f16c")))

// Eight elements widened to fp32 (exact for all three dtypes).
DDAD_AVX2 inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
DDAD_AVX2 inline __m256 load8(const c10::BFloat16* p) {
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(raw), 16));
}
DDAD_AVX2 inline __m256 load8(const c10::Half* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

DDAD_AVX2 inline __m256 abs_diff8(const __m256 a, const __m256 b) {
  return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_sub_ps(a, b));
}

// Same arithmetic, same order as chunk_sum_generic: lane j of the generic loop is element j % 8 of
// register j / 8 here.
template <typename T>
DDAD_AVX2 float chunk_sum_avx2(const T* t, const T* s, int64_t n) {
  alignas(32) float chunk[kLanes] = {};
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t m = std::min(kBlock, n - b);
    const T* tb = t + b;
    const T* sb = s + b;
    __m256 a0 = _mm256_setzero_ps();
    __m256 a1 = _mm256_setzero_ps();
    __m256 a2 = _mm256_setzero_ps();
    __m256 a3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + kLanes <= m; i += kLanes) {
      a0 = _mm256_add_ps(a0, abs_diff8(load8(tb + i), load8(sb + i)));
      a1 = _mm256_add_ps(a1, abs_diff8(load8(tb + i + 8), load8(sb + i + 8)));
      a2 = _mm256_add_ps(a2, abs_diff8(load8(tb + i + 16), load8(sb + i + 16)));
      a3 = _mm256_add_ps(a3, abs_diff8(load8(tb + i + 24), load8(sb + i + 24)));
    }
    alignas(32) float acc[kLanes];
    _mm256_store_ps(acc, a0);
    _mm256_store_ps(acc + 8, a1);
    _mm256_store_ps(acc + 16, a2);
    _mm256_store_ps(acc + 24, a3);
    tail_into_lanes(tb, sb, i, m, acc);
    for (int64_t j = 0; j < kLanes; ++j) {
      chunk[j] += acc[j];
    }
  }
  return fold_lanes(chunk);
}

// Gradient bits of eight elements: pos where t > s, neg where t < s, +0 elsewhere.
DDAD_AVX2 inline void grad8(const __m256 d, const __m256 pos, const __m256 neg, __m256* gt,
                            __m256* gs) {
  const __m256 zero = _mm256_setzero_ps();
  const __m256 p = _mm256_cmp_ps(d, zero, _CMP_GT_OQ);
  const __m256 q = _mm256_cmp_ps(d, zero, _CMP_LT_OQ);
  *gt = _mm256_or_ps(_mm256_and_ps(p, pos), _mm256_and_ps(q, neg));
  *gs = _mm256_or_ps(_mm256_and_ps(p, neg), _mm256_and_ps(q, pos));
}

DDAD_AVX2 void chunk_grad_avx2(const float* t, const float* s, float* gt, float* gs, int64_t n,
                               float pos, float neg) {
  const __m256 vpos = _mm256_set1_ps(pos);
  const __m256 vneg = _mm256_set1_ps(neg);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 rt;
    __m256 rs;
    grad8(_mm256_sub_ps(load8(t + i), load8(s + i)), vpos, vneg, &rt, &rs);
    if (gt != nullptr) {
      _mm256_storeu_ps(gt + i, rt);
    }
    if (gs != nullptr) {
      _mm256_storeu_ps(gs + i, rs);
    }
  }
  chunk_grad_generic(t + i, s + i, gt ? gt + i : nullptr, gs ? gs + i : nullptr, n - i, pos, neg);
}

// 16-bit outputs: the comparison masks are narrowed to 16 bits and select the precomputed bit
// patterns of T(scale) and T(-scale), so no per-element rounding is needed.
template <typename T>
DDAD_AVX2 void chunk_grad_avx2(const T* t, const T* s, T* gt, T* gs, int64_t n, T pos, T neg) {
  const __m128i vpos = _mm_set1_epi16(static_cast<int16_t>(pos.x));
  const __m128i vneg = _mm_set1_epi16(static_cast<int16_t>(neg.x));
  const __m256 zero = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 d = _mm256_sub_ps(load8(t + i), load8(s + i));
    const __m256i p32 = _mm256_castps_si256(_mm256_cmp_ps(d, zero, _CMP_GT_OQ));
    const __m256i q32 = _mm256_castps_si256(_mm256_cmp_ps(d, zero, _CMP_LT_OQ));
    const __m128i p = _mm_packs_epi32(_mm256_castsi256_si128(p32), _mm256_extracti128_si256(p32, 1));
    const __m128i q = _mm_packs_epi32(_mm256_castsi256_si128(q32), _mm256_extracti128_si256(q32, 1));
    if (gt != nullptr) {
      const __m128i r = _mm_or_si128(_mm_and_si128(p, vpos), _mm_and_si128(q, vneg));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(gt + i), r);
    }
    if (gs != nullptr) {
      const __m128i r = _mm_or_si128(_mm_and_si128(p, vneg), _mm_and_si128(q, vpos));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(gs + i), r);
    }
  }
  chunk_grad_generic(t + i, s + i, gt ? gt + i : nullptr, gs ? gs + i : nullptr, n - i, pos, neg);
}

bool use_avx2() {
  static const bool ok = [] {
    const char* generic = std::getenv("DDAD_CPU_GENERIC");
    if (generic != nullptr && generic[0] != '\0' && generic[0] != '0') {
      return false;
    }
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c");
  }();
  return ok;
}

#else

bool use_avx2() { return false; }

#endif  // DDAD_L1_AVX2

template <typename T>
float chunk_sum(const T* t, const T* s, int64_t n) {
#ifdef DDAD_L1_AVX2
  if (use_avx2()) {
    return chunk_sum_avx2(t, s, n);
  }
#endif
  return chunk_sum_generic(t, s, n);
}

template <typename T>
void chunk_grad(const T* t, const T* s, T* gt, T* gs, int64_t n, T pos, T neg) {
#ifdef DDAD_L1_AVX2
  if (use_avx2()) {
    chunk_grad_avx2(t, s, gt, gs, n, pos, neg);
    return;
  }
#endif
  chunk_grad_generic(t, s, gt, gs, n, pos, neg);
}

// Pairwise sum of the partials in a fixed order: p[i] = p[2i] + p[2i + 1], odd ones carried over.
float pairwise_sum(c10::SmallVectorImpl<float>& p) {
  auto n = static_cast<int64_t>(p.size());
  while (n > 1) {
    const int64_t half = n / 2;
    for (int64_t i = 0; i < half; ++i) {
      p[i] = p[2 * i] + p[2 * i + 1];
    }
    if (n % 2 != 0) {
      p[half] = p[n - 1];
    }
    n = half + n % 2;
  }
  return p.empty() ? 0.0f : p[0];
}

// Runs f(c) for every chunk c of [0, n) (kChunk elements each, the last one shorter) on up to
// torch.get_num_threads() threads, one chunk at a time to whichever thread is free. Nested in
// another parallel region, runs serially.
template <typename F>
void for_each_chunk(int64_t n, const F& f) {
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  const int64_t threads =
      at::in_parallel_region() ? 1 : std::min<int64_t>(at::get_num_threads(), chunks);
  if (threads <= 1) {
    for (int64_t c = 0; c < chunks; ++c) {
      f(c, c * kChunk, std::min(kChunk, n - c * kChunk));
    }
    return;
  }
#pragma omp parallel for schedule(dynamic, 1) num_threads(static_cast<int>(threads))
  for (int64_t c = 0; c < chunks; ++c) {
    f(c, c * kChunk, std::min(kChunk, n - c * kChunk));
  }
}

template <typename T>
float l1_mean(const T* t, const T* s, int64_t n) {
  c10::SmallVector<float, 16> partial((n + kChunk - 1) / kChunk, 0.0f);
  for_each_chunk(n, [&](int64_t c, int64_t off, int64_t len) {
    partial[c] = chunk_sum(t + off, s + off, len);
  });
  // Division in double then one rounding, like torch's mean of a float32 tensor.
  return static_cast<float>(static_cast<double>(pairwise_sum(partial)) / static_cast<double>(n));
}

template <typename T>
void l1_grad(const T* t, const T* s, T* gt, T* gs, int64_t n, float g) {
  // g / numel as autograd's mean backward computes it on CPU (numel rounded to fp32, one fp32
  // division), then rounded once to T: the eager reference's bits for any numel, 2^24 + 1 too.
  const float scale = g / static_cast<float>(n);
  const T pos(scale);
  const T neg(-scale);
  for_each_chunk(n, [&](int64_t /*c*/, int64_t off, int64_t len) {
    chunk_grad(t + off, s + off, gt ? gt + off : nullptr, gs ? gs + off : nullptr, len, pos, neg);
  });
}

template <typename T>
T* ptr_or_null(const at::Tensor& x) {
  return x.defined() ? x.data_ptr<T>() : nullptr;
}

at::Tensor l1_discrepancy_cpu(const at::Tensor& t, const at::Tensor& s) {
  ddad::l1::check_inputs(t, s, "ddad::l1_discrepancy");
  TORCH_CHECK(t.device().is_cpu(), "ddad::l1_discrepancy (CPU): inputs must be CPU tensors");
  at::Tensor out = at::empty({}, t.options().dtype(at::kFloat));
  const int64_t n = t.numel();
  if (n == 0) {
    return out.fill_(std::nanf(""));  // the mean of nothing, as torch's mean
  }
  const auto [tw, sw] = ddad::l1::in_common_layout(t, s);
  float* o = out.data_ptr<float>();
  switch (tw.scalar_type()) {
    case at::kFloat:
      *o = l1_mean(tw.data_ptr<float>(), sw.data_ptr<float>(), n);
      break;
    case at::kBFloat16:
      *o = l1_mean(tw.data_ptr<c10::BFloat16>(), sw.data_ptr<c10::BFloat16>(), n);
      break;
    case at::kHalf:
      *o = l1_mean(tw.data_ptr<c10::Half>(), sw.data_ptr<c10::Half>(), n);
      break;
    default:
      TORCH_CHECK(false, "unreachable: dtype checked above");
  }
  return out;
}

std::tuple<at::Tensor, at::Tensor> l1_discrepancy_backward_cpu(const at::Tensor& grad,
                                                               const at::Tensor& t,
                                                               const at::Tensor& s, bool need_t,
                                                               bool need_s) {
  ddad::l1::check_inputs(t, s, "ddad::l1_discrepancy_backward");
  TORCH_CHECK(t.device().is_cpu(),
              "ddad::l1_discrepancy_backward (CPU): inputs must be CPU tensors");
  const float g = ddad::l1::checked_grad(grad, t).item<float>();
  at::Tensor out_t = need_t ? at::empty_like(t) : at::empty({0}, t.options());
  at::Tensor out_s = need_s ? at::empty_like(s) : at::empty({0}, s.options());
  const int64_t n = t.numel();
  if (n == 0 || (!need_t && !need_s)) {
    return {out_t, out_s};
  }
  const auto [tw, sw] = ddad::l1::in_common_layout(t, s);
  const at::Tensor gt = need_t ? ddad::l1::kernel_target(out_t, tw) : at::Tensor();
  const at::Tensor gs = need_s ? ddad::l1::kernel_target(out_s, tw) : at::Tensor();
  switch (tw.scalar_type()) {
    case at::kFloat:
      l1_grad(tw.data_ptr<float>(), sw.data_ptr<float>(), ptr_or_null<float>(gt),
              ptr_or_null<float>(gs), n, g);
      break;
    case at::kBFloat16:
      l1_grad(tw.data_ptr<c10::BFloat16>(), sw.data_ptr<c10::BFloat16>(),
              ptr_or_null<c10::BFloat16>(gt), ptr_or_null<c10::BFloat16>(gs), n, g);
      break;
    case at::kHalf:
      l1_grad(tw.data_ptr<c10::Half>(), sw.data_ptr<c10::Half>(), ptr_or_null<c10::Half>(gt),
              ptr_or_null<c10::Half>(gs), n, g);
      break;
    default:
      TORCH_CHECK(false, "unreachable: dtype checked above");
  }
  ddad::l1::copy_from_target(out_t, gt);
  ddad::l1::copy_from_target(out_s, gs);
  return {out_t, out_s};
}

}  // namespace

TORCH_LIBRARY_IMPL(ddad, CPU, m) {
  m.impl("l1_discrepancy", &l1_discrepancy_cpu);
  m.impl("l1_discrepancy_backward", &l1_discrepancy_backward_cpu);
}
