// The device layer: buffers round-trip, errors are tessera::Error with the
// call's name, and an impossible allocation is a clear out-of-memory error.
#include "gpu_test_util.hpp"

namespace tc = tessera::cuda;

TEST_CASE("cuda buffers round-trip through the device", "[cuda][runtime]") {
  if (!gpu_test::have_gpu()) return;
  tc::Stream s;
  const auto v = gpu_test::random_floats(1001, 3);
  auto d = gpu_test::to_dev<float, 2>(s, v, {7, 143});
  CHECK(d.view()[2].shape() == std::array<int64_t, 1>{143});
  tc::DeviceTensor<float, 2> e({7, 143});
  tc::detail::copy_on_device(s, e.data(), d.data(), d.size_bytes());
  CHECK(gpu_test::to_host(s, e.view()) == v);
  tc::DeviceTensor<float, 2> moved = std::move(e);
  CHECK(moved.data() != nullptr);
  CHECK(e.data() == nullptr);
  const auto info = tc::device_info(0);
  CHECK(info.sm_count > 0);
}

TEST_CASE("cuda errors name the call", "[cuda][runtime]") {
  if (!gpu_test::have_gpu()) return;
  tc::Stream s;
  // 1 PiB: no device has it; the error says out of memory and names the buffer.
  CHECK_THROWS_WITH((tc::DeviceTensor<float, 1>({int64_t{1} << 48}, "huge buffer")),
                    Catch::Contains("out of device memory") && Catch::Contains("huge buffer"));
  std::vector<float> host(5);
  tc::DeviceTensor<float, 1> d({4});
  CHECK_THROWS_AS((tc::upload<float, 1>(s, std::span<const float>(host), d.view())), tessera::Error);
  CHECK_THROWS_WITH(tc::device_info(1 << 20), Catch::Contains("cudaGetDeviceProperties"));
  // The stream stays usable after the errors above.
  const std::vector<float> one{1.f, 2.f, 3.f, 4.f};
  tc::upload<float, 1>(s, std::span<const float>(one), d.view());
  CHECK(gpu_test::to_host(s, d.view()) == one);
}
