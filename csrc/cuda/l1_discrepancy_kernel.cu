// CUDA kernels of ddad::l1_discrepancy, templated on float / __nv_bfloat16 / __half. Needs only the
// CUDA headers: `nvcc -c -std=c++17 -arch=sm_90 l1_discrepancy_kernel.cu` compile-checks it anywhere.
//
// Forward, two launches on the caller's stream:
//   l1_partial_kernel: a grid that depends only on n (<= kMaxBlocks blocks of kThreads); each thread
//     accumulates |t - s| in fp32 over a grid-stride loop of 16-byte loads, the block reduces with
//     warp shuffles (a fixed xor tree) and shared memory, and writes one partial per block.
//   l1_finalize_kernel: one block sums the partials in a fixed order and divides by n.
// The order of every addition is fixed by n and the pointers' alignment, so the result is bitwise
// the same run to run (no float atomics).
// Backward: one elementwise kernel reads t and s once (16-byte loads) and writes both gradients
// (16-byte stores); g / n is computed in the kernel from the device scalar grad.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "l1_discrepancy_kernel.h"

namespace ddad::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int64_t kMaxBlocks = 1024;      // partial sums of the forward
constexpr int64_t kMaxGradBlocks = 8192;  // the backward is a grid-stride loop beyond that
constexpr int64_t kElemsPerThread = 8;    // the forward's blocks: n / (kThreads * this), at least

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }

template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}
template <>
__device__ __forceinline__ __half from_float<__half>(float x) {
  return __float2half_rn(x);
}

// 16 bytes of T: one 128-bit load or store when the address is 16-byte aligned.
template <typename T>
struct alignas(16) Pack {
  static constexpr int kSize = 16 / sizeof(T);
  T v[kSize];
};

// Sum of v over the block, valid in thread 0. Fixed order: a shuffle tree per warp, then warp 0
// reduces the kWarps warp sums the same way.
__device__ __forceinline__ float block_sum(float v) {
  __shared__ float warp_sums[kWarps];
  for (int offset = 16; offset > 0; offset >>= 1) {
    v += __shfl_down_sync(0xffffffffu, v, offset);
  }
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  if (lane == 0) {
    warp_sums[warp] = v;
  }
  __syncthreads();
  if (warp == 0) {
    v = lane < kWarps ? warp_sums[lane] : 0.0f;
    for (int offset = 16; offset > 0; offset >>= 1) {
      v += __shfl_down_sync(0xffffffffu, v, offset);
    }
  }
  return v;
}

// partial[blockIdx.x] = sum of |t - s| over this block's grid-stride share of the n elements.
// t, s: (n,) flat; partial: (gridDim.x,) fp32. kVectorised: t and s are 16-byte aligned.
template <typename T, bool kVectorised>
__global__ void __launch_bounds__(kThreads)
    l1_partial_kernel(const T* __restrict__ t, const T* __restrict__ s, int64_t n,
                      float* __restrict__ partial) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  float acc = 0.0f;
  int64_t done = 0;
  if constexpr (kVectorised) {
    constexpr int kVec = Pack<T>::kSize;
    const int64_t packs = n / kVec;
    const auto* tp = reinterpret_cast<const Pack<T>*>(t);
    const auto* sp = reinterpret_cast<const Pack<T>*>(s);
    for (int64_t i = tid; i < packs; i += stride) {
      const Pack<T> a = tp[i];
      const Pack<T> b = sp[i];
#pragma unroll
      for (int k = 0; k < kVec; ++k) {
        acc += fabsf(to_float(a.v[k]) - to_float(b.v[k]));
      }
    }
    done = packs * kVec;
  }
  for (int64_t i = done + tid; i < n; i += stride) {
    acc += fabsf(to_float(t[i]) - to_float(s[i]));
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) {
    partial[blockIdx.x] = acc;
  }
}

// *out = (sum of partial[0..blocks)) / n. One block of kThreads; partial: (blocks,) fp32.
__global__ void __launch_bounds__(kThreads)
    l1_finalize_kernel(const float* __restrict__ partial, int blocks, int64_t n,
                       float* __restrict__ out) {
  float v = 0.0f;
  for (int i = threadIdx.x; i < blocks; i += kThreads) {
    v += partial[i];
  }
  v = block_sum(v);
  if (threadIdx.x == 0) {
    *out = static_cast<float>(static_cast<double>(v) / static_cast<double>(n));
  }
}

// sign(d) as one of the three values pos, neg and zero of T. torch.sign gives 0 for d == 0 and for
// NaN: neither comparison holds for them.
template <typename T>
__device__ __forceinline__ T pick_sign(float d, T pos, T neg, T zero) {
  return d > 0.0f ? pos : (d < 0.0f ? neg : zero);
}

// grad_t = sign(t - s) * (*grad) / n, grad_s = -grad_t. t, s, grad_t, grad_s: (n,) flat in T;
// grad: () fp32 on the device. A null grad_t / grad_s is skipped. kVectorised: every non-null
// pointer is 16-byte aligned.
template <typename T, bool kVectorised>
__global__ void __launch_bounds__(kThreads)
    l1_grad_kernel(const float* __restrict__ grad, const T* __restrict__ t,
                   const T* __restrict__ s, T* __restrict__ grad_t, T* __restrict__ grad_s,
                   int64_t n) {
  // g / n correctly rounded (a double division: under --use_fast_math an fp32 one is approximate),
  // then rounded once to T: within one ulp of T of CUDA eager's, which multiplies by a rounded 1 / n.
  const auto scale = static_cast<float>(static_cast<double>(*grad) / static_cast<double>(n));
  const T pos = from_float<T>(scale);
  const T neg = from_float<T>(-scale);
  const T zero = from_float<T>(0.0f);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  int64_t done = 0;
  if constexpr (kVectorised) {
    constexpr int kVec = Pack<T>::kSize;
    const int64_t packs = n / kVec;
    const auto* tp = reinterpret_cast<const Pack<T>*>(t);
    const auto* sp = reinterpret_cast<const Pack<T>*>(s);
    auto* gtp = reinterpret_cast<Pack<T>*>(grad_t);
    auto* gsp = reinterpret_cast<Pack<T>*>(grad_s);
    // Two packs in flight per thread (left to itself, ptxas unrolls further and spills for fp32).
#pragma unroll 2
    for (int64_t i = tid; i < packs; i += stride) {
      const Pack<T> a = tp[i];
      const Pack<T> b = sp[i];
      Pack<T> rt;
      Pack<T> rs;
#pragma unroll
      for (int k = 0; k < kVec; ++k) {
        const float d = to_float(a.v[k]) - to_float(b.v[k]);
        rt.v[k] = pick_sign(d, pos, neg, zero);
        rs.v[k] = pick_sign(d, neg, pos, zero);
      }
      if (gtp != nullptr) {
        gtp[i] = rt;
      }
      if (gsp != nullptr) {
        gsp[i] = rs;
      }
    }
    done = packs * kVec;
  }
  for (int64_t i = done + tid; i < n; i += stride) {
    const float d = to_float(t[i]) - to_float(s[i]);
    if (grad_t != nullptr) {
      grad_t[i] = pick_sign(d, pos, neg, zero);
    }
    if (grad_s != nullptr) {
      grad_s[i] = pick_sign(d, neg, pos, zero);
    }
  }
}

bool aligned16(const void* p) { return p == nullptr || reinterpret_cast<uintptr_t>(p) % 16 == 0; }

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

template <typename T>
cudaError_t forward(const T* t, const T* s, int64_t n, float* workspace, float* out,
                    cudaStream_t stream) {
  const auto blocks = static_cast<int>(l1_forward_workspace(n));
  if (aligned16(t) && aligned16(s)) {
    l1_partial_kernel<T, true><<<blocks, kThreads, 0, stream>>>(t, s, n, workspace);
  } else {
    l1_partial_kernel<T, false><<<blocks, kThreads, 0, stream>>>(t, s, n, workspace);
  }
  l1_finalize_kernel<<<1, kThreads, 0, stream>>>(workspace, blocks, n, out);
  return cudaGetLastError();
}

template <typename T>
cudaError_t backward(const float* grad, const T* t, const T* s, T* grad_t, T* grad_s, int64_t n,
                     cudaStream_t stream) {
  const auto blocks =
      static_cast<int>(std::min(kMaxGradBlocks, ceil_div(n, kThreads * Pack<T>::kSize)));
  if (aligned16(t) && aligned16(s) && aligned16(grad_t) && aligned16(grad_s)) {
    l1_grad_kernel<T, true><<<blocks, kThreads, 0, stream>>>(grad, t, s, grad_t, grad_s, n);
  } else {
    l1_grad_kernel<T, false><<<blocks, kThreads, 0, stream>>>(grad, t, s, grad_t, grad_s, n);
  }
  return cudaGetLastError();
}

}  // namespace

int64_t l1_forward_workspace(int64_t n) {
  return std::max<int64_t>(1, std::min(kMaxBlocks, ceil_div(n, kThreads * kElemsPerThread)));
}

cudaError_t l1_forward(L1DType dtype, const void* t, const void* s, int64_t n, float* workspace,
                       float* out, cudaStream_t stream) {
  switch (dtype) {
    case L1DType::kFloat32:
      return forward(static_cast<const float*>(t), static_cast<const float*>(s), n, workspace,
                     out, stream);
    case L1DType::kBFloat16:
      return forward(static_cast<const __nv_bfloat16*>(t), static_cast<const __nv_bfloat16*>(s),
                     n, workspace, out, stream);
    case L1DType::kFloat16:
      return forward(static_cast<const __half*>(t), static_cast<const __half*>(s), n, workspace,
                     out, stream);
  }
  return cudaErrorInvalidValue;
}

cudaError_t l1_backward(L1DType dtype, const float* grad, const void* t, const void* s,
                        void* grad_t, void* grad_s, int64_t n, cudaStream_t stream) {
  switch (dtype) {
    case L1DType::kFloat32:
      return backward(grad, static_cast<const float*>(t), static_cast<const float*>(s),
                      static_cast<float*>(grad_t), static_cast<float*>(grad_s), n, stream);
    case L1DType::kBFloat16:
      return backward(grad, static_cast<const __nv_bfloat16*>(t),
                      static_cast<const __nv_bfloat16*>(s), static_cast<__nv_bfloat16*>(grad_t),
                      static_cast<__nv_bfloat16*>(grad_s), n, stream);
    case L1DType::kFloat16:
      return backward(grad, static_cast<const __half*>(t), static_cast<const __half*>(s),
                      static_cast<__half*>(grad_t), static_cast<__half*>(grad_s), n, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace ddad::cuda
