"""Engine overhead over bare denoiser calls, and many images in one engine call.

Overhead: the engine (:func:`diffpid.engine.estimate.estimate`, default adaptive sampler) against the
same number of bare ``model.eps`` calls of the same shapes, at batch 64 and 256, on the
embedded shapes model and on a Stable-Diffusion-shaped random-weight UNet; engine and bare
runs interleaved, ``--repeats`` times each, minima compared (the machine is shared: minima
of interleaved repeats are what is comparable). On CUDA the UNet runs in bfloat16.

Many images: one engine call over ``--images`` images of the Gaussian-mixture oracle against
``--parts`` calls over equal slices (the old engine drew one sample at a time once images x
conditions exceeded a batch: 40,000 images x 128 samples had not finished after 10 minutes
while 20 calls of 2,000 took 21 s).

    python benchmarks/engine_overhead.py --threads 1
Writes ``benchmarks/results/engine_overhead.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from attention_overhead import sd_like_unet  # noqa: E402  (the same SD-shaped UNet as the attention benchmark)

import diffpid  # noqa: E402
from diffpid.engine.estimate import Difference, estimate  # noqa: E402
from diffpid.models.base import Model  # noqa: E402
from diffpid.models.mixture import GaussianMixture  # noqa: E402
from diffpid.plan import encode  # noqa: E402

OUT = Path(__file__).parent / "results"


class UNetEps(Model):
    """A bare UNet2DConditionModel as a Model: conditions are ``(77, 768)`` text embeddings."""

    name = "sd-shaped-random-unet"

    def __init__(self, unet, size: int, device: torch.device, dtype: torch.dtype) -> None:
        self.unet = unet.to(device, dtype)
        self.data_shape = (4, size, size)
        self.logsnr_range = (-20.0, 20.0)
        self.device, self.dtype = device, dtype

    def encode_prompt(self, prompt):
        g = torch.Generator().manual_seed(len(str(prompt)))
        return torch.randn(77, 768, generator=g).to(self.device, self.dtype)

    def eps(self, x_a, logsnr, conditions):
        n, k = len(x_a), len(conditions)
        x = x_a.to(self.dtype).repeat_interleave(k, 0)
        t = ((logsnr.float() + 10) * 50).clamp(0, 999).repeat_interleave(k, 0)
        emb = torch.stack(list(conditions)).repeat(n, 1, 1)
        with torch.no_grad():
            out = self.unet(x, t, encoder_hidden_states=emb).sample
        return out.float().reshape(n, k, *self.data_shape)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def overhead(model: Model, conds: list, batch: int, images: int, samples: int, repeats: int) -> dict:
    """Minimum seconds of the engine and of the same bare calls, interleaved."""
    k = len(conds)
    x = torch.randn(images, *model.data_shape)
    pairs_per_call = max(1, batch // k)
    calls = -(-images * samples // pairs_per_call)
    xa = torch.randn(pairs_per_call, *model.data_shape, device=model.device)
    a = torch.linspace(-4, 6, pairs_per_call, device=model.device)
    times = {"engine": [], "bare": []}

    def engine():
        estimate(model, x, conds, [Difference(1, 0)], samples=samples, batch_size=batch, seed=0)

    def bare():
        with torch.no_grad():
            for _ in range(calls):
                model.eps(xa, a, conds)

    engine(), bare()  # warm up
    for _ in range(repeats):
        for name, fn in (("engine", engine), ("bare", bare)):
            _sync(model.device)
            t = time.perf_counter()
            with torch.no_grad():
                fn()
            _sync(model.device)
            times[name].append(time.perf_counter() - t)
    e, b = min(times["engine"]), min(times["bare"])
    return {"model": model.name, "batch": batch, "images": images, "samples": samples, "conditions": k,
            "calls": calls, "engine_s": round(e, 4), "bare_s": round(b, 4), "overhead_pct": round(100 * (e / b - 1), 1),
            "engine_all_s": [round(v, 4) for v in times["engine"]], "bare_all_s": [round(v, 4) for v in times["bare"]]}


class Stub(Model):
    """A denoiser that costs nothing: returns a fixed tensor of the right shape (the engine's own time)."""

    name = "stub"

    def __init__(self, model: Model) -> None:
        self.data_shape, self.logsnr_range, self.device = model.data_shape, model.logsnr_range, model.device
        self.out = None

    def eps(self, x_a, logsnr, conditions):
        shape = (len(x_a), len(conditions), *self.data_shape)
        if self.out is None or self.out.shape != shape:
            self.out = torch.randn(shape, device=self.device)
        return self.out


def own_time(model: Model, conds: list, batch: int, images: int, samples: int, repeats: int) -> dict:
    """The engine's own seconds per denoiser call: the engine around a free denoiser (minimum of repeats)."""
    stub = Stub(model)
    x = torch.randn(images, *model.data_shape)
    calls = -(-images * samples // max(1, batch // len(conds)))
    best = float("inf")
    for _ in range(repeats + 1):
        _sync(model.device)
        t = time.perf_counter()
        estimate(stub, x, conds, [Difference(1, 0)], samples=samples, batch_size=batch, seed=0)
        _sync(model.device)
        best = min(best, time.perf_counter() - t)
    return {"own_ms_per_call": round(1000 * best / calls, 2)}


def many_images(images: int, parts: int, samples: int, batch: int) -> dict:
    """One engine call over ``images`` oracle images against ``parts`` calls over slices."""
    means = torch.zeros(4, 2, 4, 4)
    for i in range(4):
        means[i, i % 2] = 0.6 * (1 + i // 2)
    m = GaussianMixture(means, 0.05, labels={"a": [0, 0, 1, 1], "b": [0, 1, 0, 1]})
    x, _ = m.sample(images, generator=torch.Generator().manual_seed(0))
    conds = [m.encode_prompt(c) for c in ({}, {"a": 0}, {"b": 1}, {"a": 0, "b": 1})]
    terms = [Difference(1, 0), Difference(2, 0), Difference(3, 0)]
    t = time.perf_counter()
    whole = estimate(m, x, conds, terms, samples=samples, batch_size=batch, seed=0)
    one = time.perf_counter() - t
    t = time.perf_counter()
    step = images // parts
    sliced = [estimate(m, x[i : i + step], conds, terms, samples=samples, batch_size=batch, seed=0).terms[0].value
              for i in range(0, images, step)]
    split = time.perf_counter() - t
    same = bool(abs(whole.terms[0].value[:step] - sliced[0]).max() < 1e-4 * abs(sliced[0]).max())
    return {"images": images, "samples": samples, "conditions": 4, "batch": batch, "one_call_s": round(one, 1),
            "parts": parts, "parts_s": round(split, 1), "first_slice_values_equal": same}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--images", type=int, default=40_000)
    p.add_argument("--parts", type=int, default=20)
    p.add_argument("--many-batch", type=int, default=8192, help="batch size of the many-images runs")
    p.add_argument("--skip-many", action="store_true")
    p.add_argument("--skip-bare", action="store_true",
                   help="measure only the engine's own time; keep the engine/bare rows of the last results file")
    p.add_argument("--unet-channels", type=int, nargs="+", default=[32, 64, 128, 128])
    p.add_argument("--unet-size", type=int, default=16)
    p.add_argument("--note", default="", help="what else ran on the machine meanwhile")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    shapes = diffpid.load_shapes_model(device=str(device))
    unet = UNetEps(sd_like_unet(args.unet_channels, args.unet_size), args.unet_size, device,
                   torch.bfloat16 if cuda else torch.float32)
    old = json.loads((OUT / "engine_overhead.json").read_text()) if args.skip_bare else {}
    rows = []
    for model, prompt in ((shapes, "a big red circle left of a small blue box"), (unet, "a photo of a cat")):
        conds = [encode(model, ""), encode(model, prompt)]
        for batch in (64, 256):
            if args.skip_bare:
                r = next(o for o in old["overhead"] if o["model"] == model.name and o["batch"] == batch)
            else:
                r = overhead(model, conds, batch, images=4, samples=32, repeats=args.repeats)
            r.update(own_time(model, conds, batch, images=4, samples=32, repeats=args.repeats))
            r["own_pct"] = round(100 * r["own_ms_per_call"] / (1000 * r["bare_s"] / r["calls"]), 2)
            print(json.dumps({k: v for k, v in r.items() if not k.endswith("all_s")}), flush=True)
            rows.append(r)
    many = old.get("many_images") if args.skip_many else many_images(args.images, args.parts, 128, args.many_batch)
    if many:
        print(json.dumps(many), flush=True)
    meta = {"device": torch.cuda.get_device_name() if cuda else platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "threads": args.threads, "torch": torch.__version__,
            "load_average_at_end": list(os.getloadavg()), "note": args.note,
            "gpu": "measured" if cuda else "not measured: no GPU on this machine"}
    OUT.mkdir(exist_ok=True)
    (OUT / "engine_overhead.json").write_text(json.dumps({"meta": meta, "overhead": rows, "many_images": many},
                                                          indent=1))
    lines = ["# Engine overhead over bare denoiser calls", "",
             f"Device: {meta['device']} ({meta['cpu_count']} cores, {args.threads} torch thread(s)), torch "
             f"{meta['torch']}. GPU: {meta['gpu']}. Load average at the end: "
             f"{', '.join(f'{v:.1f}' for v in meta['load_average_at_end'])}.", "", args.note, "",
             "4 images x 32 samples x 2 conditions (256 denoiser rows in all), the same call shapes for both. "
             "`engine s`, `bare s`: minimum of interleaved repeats of the engine and of the bare calls; under load "
             "their difference is within the noise. `own`: the engine around a denoiser that costs nothing (a fixed "
             "tensor), per call, and as a share of a bare call: the engine's own work, which load does not hide.", "",
             "| model | batch | calls | engine s | bare s | engine/bare - 1 | own ms per call | own share |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['batch']} | {r['calls']} | {r['engine_s']:.3f} | {r['bare_s']:.3f} | "
                     f"{r['overhead_pct']:+.1f}% | {r['own_ms_per_call']:.2f} | {r['own_pct']:.2f}% |")
    if many:
        lines += ["", f"## Many images in one call (Gaussian-mixture oracle, 4 conditions, batch {many['batch']})", "",
                  f"{many['images']:,} images x {many['samples']} samples in one call: {many['one_call_s']} s; "
                  f"in {many['parts']} calls of {many['images'] // many['parts']:,}: {many['parts_s']} s. "
                  f"First slice's values equal to the whole call's: {many['first_slice_values_equal']}."]
    (OUT / "engine_overhead.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
