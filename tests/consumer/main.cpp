// Uses tessera from outside: normalise a row with the default backend and
// check it against the scalar reference. Exit code 0 means both agree.
#include <cmath>
#include <cstdio>

#include <tessera/tessera.hpp>

int main() {
  using namespace tessera;
  Tensor<float, 2> x({1, 5}), a({1, 5}), b({1, 5});
  for (int i = 0; i < 5; ++i) x(0, i) = static_cast<float>(i) - 2.f;
  const float w[5] = {1, 1, 1, 1, 1};
  backend::active::rms_norm(x.view(), w, 1e-6f, a.view());
  backend::scalar::rms_norm(x.view(), w, 1e-6f, b.view());
  for (int i = 0; i < 5; ++i)
    if (std::fabs(a(0, i) - b(0, i)) > 1e-5f) return 1;
  std::printf("tessera %s backend: rms_norm([-2..2]) = [%.4f %.4f %.4f %.4f %.4f]\n", backend::Default::name,
              a(0, 0), a(0, 1), a(0, 2), a(0, 3), a(0, 4));
  return 0;
}
