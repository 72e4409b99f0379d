"""The ``diffpid`` command.

Every subcommand is a function ``cmd_NAME(args)`` registered in :func:`build_parser`.
Errors a user can cause (:class:`~diffpid.errors.DiffpidError`) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import sys

from .errors import DiffpidError


def cmd_demo(args: argparse.Namespace) -> int:
    """Estimate MI on the Gaussian-mixture oracle and compare with the exact answer."""
    import math

    import torch

    from .information import mutual_information
    from .models.mixture import GaussianMixture

    torch.manual_seed(0)
    k = 4
    means = torch.zeros(k, 3, 8, 8)
    for i in range(k):
        means[i, i % 3] = 0.5 * (1 + i // 3)
    model = GaussianMixture(means, 0.05, labels={"colour": list(range(k))})
    g = torch.Generator().manual_seed(args.seed)
    x, comp = model.sample(args.images, generator=g)
    print(f"Gaussian-mixture oracle: {k} well-separated components, exact I(x; colour) = ln {k} = {math.log(k):.4f} nats")
    vals = []
    for i in range(args.images):
        cond = {"colour": int(comp[i])}
        r = mutual_information(model, x[i], cond, samples=args.samples, seed=args.seed + i)
        exact = (model.log_prob(x[i : i + 1], cond) - model.log_prob(x[i : i + 1])).item()
        vals.append(r.value)
        print(
            f"  image {i}: i_o = {r.value:.4f} +- {r.stderr:.4f}   i = {r.standard_value:.4f} +- {r.standard_stderr:.4f}"
            f"   exact log p(x|y)/p(x) = {exact:.4f}"
        )
    print(f"mean over images: {sum(vals) / len(vals):.4f} nats (expectation = {math.log(k):.4f})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="diffpid", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="MI on the exact Gaussian-mixture oracle against the closed form")
    d.add_argument("--samples", type=int, default=256)
    d.add_argument("--images", type=int, default=4)
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=cmd_demo)

    # further subcommands (train-shapes, explain, bench, run, runs) register here
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except DiffpidError as e:
        print(f"diffpid: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("diffpid: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
