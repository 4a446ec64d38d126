"""PyTorch references for bench_cuda_*: SDPA with the FLASH_ATTENTION and
CUDNN_ATTENTION backends on the flash-attention benchmark shapes, decode
attention through SDPA, and cuBLAS bf16 GEMM on the GEMM shapes. CUDA events,
5 warm-ups, median of 20. Run on the same GPU, in the same session."""
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


def median_ms(fn, reps=20, warm=5):
    for _ in range(warm):
        fn()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


def flash():
    shapes = [(8, 16, 1024, 128), (4, 16, 4096, 128), (1, 16, 16384, 128), (4, 16, 4096, 64), (4, 16, 4096, 256)]
    for b, h, s, d in shapes:
        q, k, v = (torch.randn(b, h, s, d, device="cuda", dtype=torch.bfloat16) for _ in range(3))
        for causal in (True, False):
            flops = 4 * b * h * s * s * d * (0.5 if causal else 1.0)
            row = []
            for name, be in (("FA2", SDPBackend.FLASH_ATTENTION), ("cuDNN", SDPBackend.CUDNN_ATTENTION)):
                try:
                    with sdpa_kernel([be]):
                        ms = median_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal))
                    row.append(f"{name} {flops / ms / 1e9:.0f} TFLOP/s")
                except RuntimeError as e:  # a backend may not take this head_dim
                    row.append(f"{name} n/a ({str(e).splitlines()[0][:40]})")
            print(f"sdpa b={b} h={h} s={s} d={d} {'causal' if causal else 'no mask'}: " + ", ".join(row))


def decode():
    for keys in (8192, 32768):
        b, hq, hkv, d = 16, 32, 8, 128
        q = torch.randn(b, hq, 1, d, device="cuda", dtype=torch.float16)
        k = torch.randn(b, hkv, keys, d, device="cuda", dtype=torch.float16)
        v = torch.randn(b, hkv, keys, d, device="cuda", dtype=torch.float16)
        ms = median_ms(lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True))
        gb = 2 * k.numel() * 2 / 1e9
        print(f"decode sdpa b={b} GQA {hq}/{hkv} d={d} keys={keys} f16: {gb / ms * 1e3:.0f} GB/s")


def gemm():
    for m, n, k in ((512, 14336, 4096), (512, 4096, 14336), (2048, 14336, 4096), (8192, 8192, 8192)):
        x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
        w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16)
        ms = median_ms(lambda: x @ w.t())
        print(f"cublas bf16 gemm m={m} n={n} k={k}: {2 * m * n * k / ms / 1e9:.0f} TFLOP/s")


def copy():
    a = torch.empty(1 << 30, dtype=torch.uint8, device="cuda").random_()
    b = torch.empty_like(a)
    ms = median_ms(lambda: b.copy_(a))
    print(f"torch device copy: {2 * a.numel() / ms / 1e6:.0f} GB/s (read + write)")


if __name__ == "__main__":
    print(torch.__version__, torch.cuda.get_device_name())
    copy()
    decode()
    flash()
    gemm()
