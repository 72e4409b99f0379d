"""Cost of attention capture per UNet call, on a random-weight UNet with Stable Diffusion 1.x's layout.

Runs the UNet on a classifier-free-guidance batch ``[uncond, cond]`` without capture, with
capture of the conditional rows (running mean of all 77 tokens, or of 2 tokens as
:func:`diffpid.attention_maps` does for a word), and with per-layer and per-head
breakdowns; modes interleaved, the fastest of ``--repeats`` UNet calls each (entering
and leaving the capture is not timed).

    python benchmarks/attention_overhead.py --channels 64 128 256 256 --size 32 --threads 1
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from diffusers import UNet2DConditionModel

from diffpid.attention import AttentionCapture


def sd_like_unet(channels: list[int], size: int) -> UNet2DConditionModel:
    """SD 1.x block types and cross-attention width (768, 8 heads), with the given channels."""
    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=size, in_channels=4, out_channels=4, block_out_channels=tuple(channels), layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32,
    ).eval()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--channels", type=int, nargs="+", default=[64, 128, 256, 256])
    p.add_argument("--size", type=int, default=32, help="latent side")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="also write the result as JSON here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    unet = sd_like_unet(args.channels, args.size)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, args.size, args.size, generator=g).repeat(2, 1, 1, 1)
    emb = torch.randn(2, 77, 768, generator=g)
    t = torch.tensor([500, 500])
    modes = {"plain": None, "capture": {}, "capture 2 tokens": {"tokens": [1, 2]},
             "capture+layers+heads": {"per_layer": True, "per_head": True}}
    best = {m: float("inf") for m in modes}
    outputs = {}
    with torch.no_grad():
        unet(x, t, emb)  # warm-up
        for _ in range(args.repeats):  # modes interleaved: the machine's load hits them alike
            for mode, opts in modes.items():
                cap = AttentionCapture(unet, ["", "p"], layout=["", "p"], **opts) if opts is not None else None
                if cap is not None:
                    cap.__enter__()
                try:
                    t0 = time.perf_counter()
                    outputs[mode] = unet(x, t, emb).sample
                    best[mode] = min(best[mode], time.perf_counter() - t0)
                finally:
                    if cap is not None:
                        cap.__exit__(None, None, None)
    same = all(torch.equal(outputs["plain"], o) for o in outputs.values())
    res = {
        "channels": args.channels, "latent": args.size, "threads": args.threads, "params_M": round(
            sum(q.numel() for q in unet.parameters()) / 1e6, 1),
        "seconds": {m: round(v, 4) for m, v in best.items()},
        "overhead": {m: round(v / best["plain"] - 1, 3) for m, v in best.items() if m != "plain"},
        "outputs_bitwise_identical": same,
    }
    print(json.dumps(res, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
