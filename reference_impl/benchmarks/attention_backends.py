"""SDPA forward + backward per backend on the two bench shapes (GPU): `python benchmarks/attention_backends.py`.

Why: MLA's value heads (128) are narrower than its query/key heads (192), and flash attention takes only
equal dims; this shows what zero-padding v to use flash costs against the kernels that take unequal dims.
Prints one line per (shape, variant): milliseconds (median of timed repeats) and TFLOP/s counted as the
bench counts attention (6 * heads * seq * (d_qk + d_v) per token, causal mask not discounted).
"""

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

SHAPES = {  # name: (batch, heads, kv_heads, seq, d_qk, d_v)
    "qwen3_30b_a3b": (4, 32, 4, 4096, 128, 128),
    "dsv3_16b_mla": (4, 16, 16, 4096, 192, 128),
}
BACKENDS = {
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
}


def run_variant(q, k, v, backend, pad_v: bool, expand_kv: bool):
    v_dim = v.shape[-1]
    if expand_kv and k.shape[1] != q.shape[1]:
        k, v = (t.repeat_interleave(q.shape[1] // t.shape[1], dim=1) for t in (k, v))
    if pad_v:
        v = F.pad(v, (0, q.shape[-1] - v_dim))
    with sdpa_kernel(backend):
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=k.shape[1] != q.shape[1])
    return out[..., :v_dim]


def time_ms(fn, repeats: int = 10) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def main() -> None:
    torch.manual_seed(0)
    for name, (b, h, kvh, s, dqk, dv) in SHAPES.items():
        q = torch.randn(b, h, s, dqk, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        k = torch.randn(b, kvh, s, dqk, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        v = torch.randn(b, kvh, s, dv, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        grad = torch.randn(b, h, s, dv, device="cuda", dtype=torch.bfloat16)
        flops = 6 * h * s * (dqk + dv) * b * s
        reference = None  # the first variant that runs; the others must agree with it
        for backend_name, backend in BACKENDS.items():
            for pad_v in [False, True] if dv < dqk else [False]:
                for expand_kv in [False, True] if kvh < h else [False]:
                    label = f"{name:14s} {backend_name:9s} pad_v={pad_v!s:5s} expand_kv={expand_kv!s:5s}"
                    try:
                        out = run_variant(q, k, v, backend, pad_v, expand_kv).float()
                        ms = time_ms(lambda: run_variant(q, k, v, backend, pad_v, expand_kv).backward(grad))
                    except RuntimeError as e:
                        print(f"{label} unsupported: {str(e).splitlines()[0][:100]}", flush=True)
                        continue
                    reference = out if reference is None else reference
                    err = ((out - reference).norm() / reference.norm()).item()
                    print(f"{label} {ms:8.2f} ms  {flops / ms / 1e9:6.0f} TFLOP/s  rel_diff {err:.1e}", flush=True)


if __name__ == "__main__":
    main()
