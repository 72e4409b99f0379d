"""Cost of joint-attention capture per transformer call, on a random-weight Flux-layout transformer.

Runs a ``FluxTransformer2DModel`` on a batch of two rows (one captured, one not, as in a
classifier-free-guidance batch) without capture, with capture of the image-to-text scores
(default layers: the dual-stream blocks; and all layers), and with concept attention of two
concepts; modes interleaved, the fastest of ``--repeats`` calls each (entering and leaving the
capture is not timed). Checks that the outputs are bitwise identical in every mode.

    python benchmarks/attention_joint_overhead.py --threads 1 --out benchmarks/results/attention_joint_cpu1.json

Full Flux.1 shape on a GPU (19 dual + 38 single blocks, 24 heads of 128, 4096 image tokens at 1024 px):
``--layers 19 --single 38 --heads 24 --head-dim 128 --grid 64 --text 512 --device cuda --dtype bfloat16``.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from diffusers import FluxTransformer2DModel

from diffpid.attention import AttentionCapture
from diffpid.attention.joint import JointAttentionAdapter


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, default=2, help="dual-stream blocks")
    p.add_argument("--single", type=int, default=4, help="single-stream blocks")
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--grid", type=int, default=32, help="image-token grid side (32: 512 px for Flux)")
    p.add_argument("--text", type=int, default=64, help="text tokens")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--out", default=None, help="also write the result as JSON here")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    dev, dtype = torch.device(a.device), getattr(torch, a.dtype)
    torch.manual_seed(0)
    d = a.heads * a.head_dim
    rope = [a.head_dim // 4, 3 * a.head_dim // 8, 3 * a.head_dim // 8]
    model = FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=a.layers, num_single_layers=a.single,
                                   attention_head_dim=a.head_dim, num_attention_heads=a.heads, joint_attention_dim=d,
                                   pooled_projection_dim=d, axes_dims_rope=rope).eval().to(dev, dtype)
    g = torch.Generator().manual_seed(0)
    n = a.grid * a.grid
    ids = torch.zeros(a.grid, a.grid, 3)
    ids[..., 1], ids[..., 2] = torch.arange(a.grid)[:, None], torch.arange(a.grid)[None]
    kw = dict(hidden_states=torch.randn(2, n, 64, generator=g).to(dev, dtype),
              encoder_hidden_states=torch.randn(2, a.text, d, generator=g).to(dev, dtype),
              pooled_projections=torch.randn(2, d, generator=g).to(dev, dtype), timestep=torch.full((2,), 0.5, device=dev),
              img_ids=ids.reshape(-1, 3).to(dev), txt_ids=torch.zeros(a.text, 3, device=dev), return_dict=False)
    ad = JointAttentionAdapter(model)
    modes = {"plain": None, "scores (dual-stream)": {}, "scores (all layers)": {"layers": list(ad.layers())},
             "concepts (2)": {"method": "concepts", "concepts": [(1,), (2, 3)]}}
    best = {m: float("inf") for m in modes}
    outputs = {}
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    with torch.no_grad():
        model(**kw)  # warm-up
        for _ in range(a.repeats):
            for mode, opts in modes.items():
                cap = AttentionCapture(ad, ["", "p"], layout=["", "p"], **opts) if opts is not None else None
                if cap is not None:
                    cap.__enter__()
                try:
                    sync()
                    t0 = time.perf_counter()
                    out = model(**kw)[0]
                    sync()
                    best[mode] = min(best[mode], time.perf_counter() - t0)
                finally:
                    if cap is not None:
                        cap.__exit__(None, None, None)
                outputs[mode] = out
    same = all(torch.equal(outputs["plain"], o) for o in outputs.values())
    res = {"layers": a.layers, "single": a.single, "heads": a.heads, "head_dim": a.head_dim, "image_tokens": n,
           "text_tokens": a.text, "device": a.device, "dtype": a.dtype, "threads": a.threads,
           "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
           "seconds": {m: round(s, 4) for m, s in best.items()},
           "overhead": {m: round(s / best["plain"] - 1, 3) for m, s in best.items() if m != "plain"},
           "outputs_bitwise_identical": same}
    print(json.dumps(res, indent=1))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
