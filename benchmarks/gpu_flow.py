"""GPU benchmark of the flow-matching backend: SD3.5-Medium- and Flux.1-shaped transformers in bf16.

For random-weight transformers of the full published shapes (SD3.5 Medium: 24 MM-DiT
layers of width 1536, patch 2; Flux.1-dev: 19 dual-stream + 38 single-stream blocks of
width 3072, guidance embedding) at 512 and 1024 px, measures

- denoiser throughput: rows per second of :meth:`FlowPipelineModel.eps` (one row = one
  noisy latent under one condition, the unit the engine counts), at ``--batch`` rows;
- engine overhead: the time of :func:`diffpid.engine.estimate.estimate` (two conditions) over the
  time of the same number of bare ``eps`` calls, minima of interleaved repeats;
- peak GPU memory of one ``eps`` call (``torch.cuda.max_memory_allocated``);
- the wall time of a 7-word :func:`diffpid.explain.explain` (MI and CMI of 7 words, PID
  and CPID of the top pair) at 512 px.

The denoiser path is the backend's own (``velocity`` -> the family's transformer call,
packing, timestep convention, guidance embedding); only the text encoders are replaced by
random embeddings of the real lengths and widths (SD3: 77 CLIP + 256 T5 tokens of width
4096, pooled 2048; Flux: 512 T5 tokens of width 4096, pooled 768), and generation by a
random latent, so the timings are of the denoiser and the estimator, not of T5-XXL or the VAE.

Writes ``benchmarks/results/gpu.md`` (and ``.json``) on a CUDA device. Without one it exits
saying so and writes nothing; ``--tiny`` runs tiny shapes on any device (to check that
the script runs) and prints its table without writing the GPU results.

    python benchmarks/gpu_flow.py                    # on a GPU machine
    python benchmarks/gpu_flow.py --tiny --device cpu
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"
PROMPT = "a red cat sitting on a blue table with a green ball"  # 7 content words

SHAPES = {
    "sd3.5-medium": dict(sample_size=128, patch_size=2, in_channels=16, out_channels=16, num_layers=24,
                         attention_head_dim=64, num_attention_heads=24, joint_attention_dim=4096,
                         caption_projection_dim=1536, pooled_projection_dim=2048, pos_embed_max_size=384,
                         dual_attention_layers=tuple(range(13)), qk_norm="rms_norm"),
    "flux.1-dev": dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                       num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768,
                       guidance_embeds=True, axes_dims_rope=(16, 56, 56)),
}
TINY = {
    "sd3.5-medium": dict(sample_size=16, patch_size=2, in_channels=16, out_channels=16, num_layers=2,
                         attention_head_dim=8, num_attention_heads=4, joint_attention_dim=64,
                         caption_projection_dim=32, pooled_projection_dim=64, pos_embed_max_size=32,
                         dual_attention_layers=(0,), qk_norm="rms_norm"),
    "flux.1-dev": dict(patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=16,
                       num_attention_heads=2, joint_attention_dim=64, pooled_projection_dim=32,
                       guidance_embeds=True, axes_dims_rope=(4, 4, 8)),
}
TEXT = {"sd3.5-medium": 77 + 256, "flux.1-dev": 512}
TINY_TEXT = {"sd3.5-medium": 77 + 32, "flux.1-dev": 32}


def bench_model(kind: str, transformer, resolution: int, text_len: int, device: torch.device):
    """The backend's SD3 or Flux model over ``transformer`` with random text embeddings."""
    from diffpid.models.base import GENERATE, Generated
    from diffpid.models.flow import _default_range
    from diffpid.models.flow_families import SD3Model
    from diffpid.models.flow_flux import FluxModel
    from diffpid.models.flow_pipeline import FlowCondition

    family = SD3Model if kind.startswith("sd3") else FluxModel

    class RandomText(family):
        """``family``'s denoiser path; prompts become random embeddings seeded by their text."""

        def __init__(self) -> None:  # noqa: D107 - no pipeline: the transformer alone
            self.pipeline, self.vae, self.transformer = None, None, transformer
            self.name, self.device, self.vae_scale_factor = f"random {kind}", device, 8
            self.resolution = (resolution, resolution)
            self.data_shape = self._data_shape() if family is FluxModel else (16, resolution // 8, resolution // 8)
            self.guidance = 3.5 if transformer.config.get("guidance_embeds", False) else None
            self.logsnr_range = _default_range(1e-3)
            self.capabilities = frozenset({GENERATE})
            self.generation = {}

        def encode_prompt(self, prompt: str) -> FlowCondition:
            g = torch.Generator().manual_seed(zlib.crc32(prompt.encode()))
            cfg = transformer.config
            emb = torch.randn(text_len, cfg.joint_attention_dim, generator=g)
            pooled = torch.randn(cfg.pooled_projection_dim, generator=g)
            return FlowCondition(prompt, emb.to(device, self.dtype), pooled.to(device, self.dtype))

        def generate(self, prompt: str, seed: int = 0, **kwargs) -> Generated:
            x = torch.randn(1, *self.data_shape, generator=torch.Generator().manual_seed(seed))
            return Generated(np.zeros((resolution, resolution, 3), np.uint8), x, prompt, seed)

    return RandomText()


def build(kind: str, tiny: bool, device: torch.device, dtype: torch.dtype):
    from diffusers import FluxTransformer2DModel, SD3Transformer2DModel

    cls = SD3Transformer2DModel if kind.startswith("sd3") else FluxTransformer2DModel
    cfg = (TINY if tiny else SHAPES)[kind]
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # initialise the random weights in place, in the target dtype
    try:
        with torch.device(device):
            model = cls(**cfg)
    finally:
        torch.set_default_dtype(old)
    return model.eval()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def measure(model, batch: int, samples: int, repeats: int, device: torch.device) -> dict:
    """Throughput, engine overhead and peak memory of ``model`` at ``batch`` rows per call."""
    from diffpid.engine.estimate import Difference, estimate

    conds = [model.encode_prompt("a red cat"), model.encode_prompt("")]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch // 2, *model.data_shape, generator=g)
    a = torch.linspace(-4, 6, batch // 2)
    eps = lambda: model.eps(x, a, conds)  # noqa: E731 - batch rows = batch/2 inputs x 2 conditions
    eps()  # warm-up
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    calls = max(1, (2 * samples) // batch)
    bare, engine = [], []
    x1 = torch.randn(1, *model.data_shape, generator=g)
    run = lambda: estimate(model, x1, conds, [Difference(0, 1)], samples=samples, batch_size=batch,  # noqa: E731
                           sampler="sobol", seed=0)
    run()  # warm-up of the engine path
    for _ in range(repeats):  # interleaved: the same load on both
        bare.append(timed(lambda: [eps() for _ in range(calls)], device))
        engine.append(timed(run, device))
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    rows = calls * batch
    return {"batch_rows": batch, "rows_per_s": rows / min(bare), "s_per_call": min(bare) / calls,
            "engine_overhead_pct": 100 * (min(engine) / min(bare) - 1), "peak_gib": peak,
            "engine_rows": 2 * samples}


def explain_time(model, samples: int, batch: int, device: torch.device) -> dict:
    from diffpid.explain import explain

    t0 = time.perf_counter()
    e = explain(PROMPT, model=model, samples=samples, batch_size=batch, attention=False, seed=0)
    sync(device)
    return {"words": len(e.words), "samples": samples, "batch_rows": batch, "seconds": time.perf_counter() - t0}


def table(rows: list[dict], explains: list[dict], meta: dict) -> str:
    out = [f"# Flow-matching backend on {meta['device_name']} ({meta['dtype']})", "",
           f"diffpid {meta['diffpid']}, torch {meta['torch']}, diffusers {meta['diffusers']}; "
           f"{'TINY shapes (a check that the script runs, not a benchmark)' if meta['tiny'] else 'full-size shapes'}, "
           "random weights, random text embeddings of the real lengths; written by benchmarks/gpu_flow.py.", "",
           "| transformer | px | params (B) | rows/call | rows/s | s/call | engine overhead | peak GiB |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        peak = "n/a" if r["peak_gib"] is None else f"{r['peak_gib']:.1f}"
        out.append(f"| {r['kind']} | {r['px']} | {r['params_b']:.2f} | {r['batch_rows']} | {r['rows_per_s']:.2f} | "
                   f"{r['s_per_call']:.3f} | {r['engine_overhead_pct']:+.1f}% | {peak} |")
    out += ["", f"7-word explain of {PROMPT!r} (MI + CMI of 7 words, PID + CPID of the top pair; no generation, "
            "no text encoders, no attention):", "", "| transformer | px | samples | rows/call | seconds |",
            "|---|---|---|---|---|"]
    for e in explains:
        out.append(f"| {e['kind']} | {e['px']} | {e['samples']} | {e['batch_rows']} | {e['seconds']:.1f} |")
    out += ["", "Engine overhead: minimum over interleaved repeats of `estimate` (2 conditions, Sobol draws) "
            "against the same number of bare `model.eps` rows."]
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny shapes on any device (checks that the script runs)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    ap.add_argument("--batch", type=int, nargs="+", default=[16, 4], help="rows per call for each size")
    ap.add_argument("--samples", type=int, default=32, help="draws of the engine-overhead run")
    ap.add_argument("--explain-samples", type=int, default=64)
    ap.add_argument("--explain-size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    ap.add_argument("--out", default=None, help="results file (default benchmarks/results/gpu.md on CUDA)")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_flow: no CUDA GPU here; nothing measured (run it on a GPU machine, or pass --tiny --device cpu "
              "to check that the script runs)", file=sys.stderr)
        return 1
    if device.type != "cuda" and not args.tiny:
        print("gpu_flow: full-size shapes are only measured on a CUDA device; pass --tiny to check the script on "
              f"{device}", file=sys.stderr)
        return 1
    if len(args.batch) != len(args.sizes):
        print("gpu_flow: give one --batch per --sizes entry", file=sys.stderr)
        return 2
    torch.set_num_threads(max(1, torch.get_num_threads()) if device.type == "cuda" else 1)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    import diffusers

    import diffpid

    meta = {"device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else str(device),
            "dtype": str(dtype).replace("torch.", ""), "tiny": args.tiny, "torch": torch.__version__,
            "diffusers": diffusers.__version__, "diffpid": getattr(diffpid, "__version__", "?")}
    rows, explains = [], []
    for kind in args.only:
        transformer = build(kind, args.tiny, device, dtype)
        params = sum(p.numel() for p in transformer.parameters()) / 1e9
        text_len = (TINY_TEXT if args.tiny else TEXT)[kind]
        sizes = [s // 8 for s in args.sizes] if args.tiny else args.sizes  # tiny: 64 / 128 px
        for px, batch in zip(sizes, args.batch):
            model = bench_model(kind, transformer, px, text_len, device)
            r = measure(model, batch, args.samples, args.repeats, device)
            rows.append({"kind": kind, "px": px, "params_b": params, **r})
            print(f"{kind} {px}px: {r['rows_per_s']:.2f} rows/s, overhead {r['engine_overhead_pct']:+.1f}%, "
                  f"peak {r['peak_gib']} GiB", flush=True)
        px = args.explain_size // 8 if args.tiny else args.explain_size
        model = bench_model(kind, transformer, px, text_len, device)
        e = explain_time(model, args.explain_samples, args.batch[0], device)
        explains.append({"kind": kind, "px": px, **e})
        print(f"{kind} explain {px}px: {e['seconds']:.1f} s", flush=True)
        del model, transformer
        if device.type == "cuda":
            torch.cuda.empty_cache()
    text = table(rows, explains, meta)
    print(text)
    out = Path(args.out) if args.out else (RESULTS / "gpu.md" if device.type == "cuda" and not args.tiny else None)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows, "explain": explains}, indent=2))
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
