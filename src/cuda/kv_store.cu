// Writing new key/value rows into a device cache (f16, bf16 or q8_0; a
// contiguous run of rows or pages through a block table), and the f32 <-> f16 /
// bf16 conversions around the tensor-core attention. One warp per 32 values of
// a head row, so a q8_0 block's scale is one warp reduction.
#include "common.cuh"
#include "kv_rows.cuh"
#include "tessera/backend/cuda/attention.hpp"
#include "tessera/backend/cuda/ops.hpp"

namespace tessera::cuda {
namespace dev {

// Block: 8 warps; warp w of the grid handles 32 values of (token, k|v, head).
template <KvElem E>
__global__ void kv_store_kernel(const float* __restrict__ k, const float* __restrict__ v,
                                const int32_t* __restrict__ pos, int64_t n_tokens, KvDst dst, int* bad) {
  pdl_launch_dependents();
  pdl_wait();
  const int64_t per_head = dst.head_dim / 32;
  const int64_t per_token = 2 * dst.n_kv_heads * per_head;
  const int64_t w = blockIdx.x * int64_t{8} + threadIdx.x / 32;
  if (w >= n_tokens * per_token) return;
  const int lane = threadIdx.x % 32;
  const int64_t t = w / per_token, r = w % per_token;
  const bool is_v = r >= per_token / 2;
  const int64_t hb = is_v ? r - per_token / 2 : r;  // head * per_head + block
  const int64_t head = hb / per_head, blk = hb % per_head;
  const int64_t p = pos[t];
  if (p < 0 || p >= dst.max_keys) {  // the device cannot throw: flag it, write nothing
    if (lane == 0) atomicExch(bad, 1);
    return;
  }
  const float x = (is_v ? v : k)[(t * dst.n_kv_heads + head) * dst.head_dim + blk * 32 + lane];
  kv_put<E>(x, (is_v ? dst.v : dst.k) + (dst.row(p) * dst.n_kv_heads + head) * dst.head_bytes, blk, lane);
}

template <bool ToHalf, bool Bf16>
__global__ void convert_kernel(const void* __restrict__ in, void* __restrict__ out, int64_t n) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= n) return;
  if constexpr (ToHalf) {
    const float x = static_cast<const float*>(in)[i];
    static_cast<uint16_t*>(out)[i] = Bf16 ? float_to_bf16_bits(x) : float_to_f16_bits(x);
  } else {
    const uint16_t b = static_cast<const uint16_t*>(in)[i];
    static_cast<float*>(out)[i] = Bf16 ? bf16_bits_to_float(b) : f16_bits_to_float(b);
  }
}

}  // namespace dev

void kv_store(const Stream& s, DeviceView<const float, 3> k, DeviceView<const float, 3> v,
              DeviceView<const int32_t, 1> pos, const DeviceKvRows& dst, DeviceView<int32_t, 1> fault) {
  const int64_t T = k.dim(0);
  const dev::KvDst d = detail::kv_dst("cuda::kv_store", k, v, pos, dst, fault);
  if (T == 0) return;
  const int64_t warps = T * 2 * dst.n_kv_heads * (dst.head_dim / 32);
  const auto grid = static_cast<unsigned>(detail::ceil_div(warps, 8));
  auto go = [&]<KvElem E>() {
    detail::launch_pdl(dev::kv_store_kernel<E>, grid, 256, 0, detail::native(s), k.data(), v.data(), pos.data(), T, d,
                       fault.data());
  };
  if (dst.elem == KvElem::f16) go.template operator()<KvElem::f16>();
  else if (dst.elem == KvElem::bf16) go.template operator()<KvElem::bf16>();
  else go.template operator()<KvElem::q8_0>();
  detail::check_launch("cuda::kv_store");
}

namespace {
template <bool ToHalf, bool Bf16>
void launch_convert(const Stream& s, const void* in, void* out, int64_t n_in, int64_t n_out) {
  check(n_in == n_out, "cuda::convert: ", n_in, " values into ", n_out);
  if (n_in == 0) return;
  dev::convert_kernel<ToHalf, Bf16><<<static_cast<unsigned>(detail::ceil_div(n_in, 256)), 256, 0, detail::native(s)>>>(
      in, out, n_in);
  detail::check_launch("cuda::convert");
}
}  // namespace

template <class H>
  requires std::is_same_v<H, f16> || std::is_same_v<H, bf16>
void convert(const Stream& s, DeviceView<const float, 1> in, DeviceView<H, 1> out) {
  launch_convert<true, std::is_same_v<H, bf16>>(s, in.data(), out.data(), in.dim(0), out.dim(0));
}

template <class H>
  requires std::is_same_v<H, f16> || std::is_same_v<H, bf16>
void convert(const Stream& s, DeviceView<const H, 1> in, DeviceView<float, 1> out) {
  launch_convert<false, std::is_same_v<H, bf16>>(s, in.data(), out.data(), in.dim(0), out.dim(0));
}

template void convert<f16>(const Stream&, DeviceView<const float, 1>, DeviceView<f16, 1>);
template void convert<bf16>(const Stream&, DeviceView<const float, 1>, DeviceView<bf16, 1>);
template void convert<f16>(const Stream&, DeviceView<const f16, 1>, DeviceView<float, 1>);
template void convert<bf16>(const Stream&, DeviceView<const bf16, 1>, DeviceView<float, 1>);

}  // namespace tessera::cuda
