"""The ``diffpid`` command.

Every subcommand is a function ``cmd_NAME(args)`` registered in :func:`build_parser`.
Errors a user can cause (:class:`~diffpid.errors.DiffpidError`, and wrong arguments) print one
line and exit 2; a dataset run (``run``, ``bench ...``) in which items failed exits 3.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import EXIT_FAILED_ITEMS, EXIT_USAGE, DiffpidError, ItemsFailedError, ParameterError
from ..settings import Settings, add_items_per_call_argument, add_settings_arguments, settings_from_args

DEMO_DEFAULTS = Settings(samples=256)
"""``diffpid demo``: enough draws that the estimate sits within a few hundredths of ln 4."""
RUN_DEFAULTS = Settings()
"""``diffpid run``: the package defaults."""


#: options that must be positive whole numbers wherever a subcommand has them
POSITIVE = ("samples", "batch_size", "steps", "images", "n", "resamples", "max_samples", "threads",
            "checkpoint_every", "items", "items_per_call")


def check_arguments(args: argparse.Namespace) -> None:
    """Checks of options many subcommands share, made before any model is loaded.

    Raises:
        ParameterError: a number that must be positive is not, the seed is out of range, or the
            device is misspelt or not on this machine.
        OutputPathError: ``--out`` / ``--export`` cannot be written.
    """
    from ..errors import ParameterError
    from ..settings import MAX_SEED, check_device_available, device_name

    for name in POSITIVE:
        v = getattr(args, name, None)
        if isinstance(v, int) and not isinstance(v, bool) and v < 1:
            raise ParameterError(f"--{name.replace('_', '-')} must be a positive whole number, got {v}")
    seed = getattr(args, "seed", None)
    if isinstance(seed, int) and not 0 <= seed <= MAX_SEED:
        raise ParameterError(f"--seed must be a whole number from 0 to {MAX_SEED}, got {seed}")
    device = getattr(args, "device", None)
    if isinstance(device, str):
        check_device_available(device_name(device))
    sampler = getattr(args, "sampler", None)
    if isinstance(sampler, str):
        from ..engine.channel import make_sampler

        make_sampler(sampler)
    if getattr(args, "command", None) != "explain":  # explain checks its report folder itself (check_output)
        from ..output_paths import check_writable

        for name in ("out", "export"):
            value = getattr(args, name, None)
            if isinstance(value, str):
                check_writable(value, inside=True, what=f"--{name}")


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:
    """Show a warning as one line ``diffpid: warning: ...`` (the CLI's warnings are for users, not code)."""
    print(f"diffpid: warning: {message}", file=sys.stderr if file is None else file)


def cmd_demo(args: argparse.Namespace) -> int:
    """Estimate MI on the Gaussian-mixture oracle and compare with the exact answer."""
    import math

    import torch

    from ..information import mutual_information
    from ..models.mixture import GaussianMixture

    settings = settings_from_args(args)
    if settings.device not in (None, "cpu") or settings.dtype is not None:
        raise ParameterError("the demo's exact Gaussian mixture runs in float64 on the CPU; drop --device and --dtype")
    torch.manual_seed(0)
    k = 4
    means = torch.zeros(k, 3, 8, 8)
    for i in range(k):
        means[i, i % 3] = 0.5 * (1 + i // 3)
    model = GaussianMixture(means, 0.05, labels={"colour": list(range(k))})
    g = torch.Generator().manual_seed(settings.seed)
    x, comp = model.sample(args.images, generator=g)
    print(f"Gaussian-mixture oracle: {k} well-separated components, exact I(x; colour) = ln {k} = {math.log(k):.4f} nats")
    vals = []
    for i in range(args.images):
        cond = {"colour": int(comp[i])}
        item = settings.replace(seed=(settings.seed + i) % 2**63, progress=False)
        r = mutual_information(model, x[i], cond, settings=item)
        exact = (model.log_prob(x[i : i + 1], cond) - model.log_prob(x[i : i + 1])).item()
        vals.append(r.value)
        print(
            f"  image {i}: i_o = {r.value:.4f} +- {r.stderr:.4f}   i = {r.standard_value:.4f} +- {r.standard_stderr:.4f}"
            f"   exact log p(x|y)/p(x) = {exact:.4f}"
        )
    print(f"mean over images: {sum(vals) / len(vals):.4f} nats (expectation = {math.log(k):.4f})")
    return 0


def cmd_train_shapes(args: argparse.Namespace) -> int:
    """Train (or resume training) the embedded shapes model; optionally export its EMA weights."""
    from pathlib import Path

    import torch

    from ..settings import check_device_available
    from ..shapes.model import ShapesConfig
    from ..shapes.training.settings import TrainSettings
    from ..shapes.training.train import train

    check_device_available(args.device)
    torch.set_num_threads(args.threads)
    config = ShapesConfig(**{k: v for k, v in (("text_encoder", args.text_encoder), ("pooled_text", args.pooled_text))
                             if v is not None})
    settings = TrainSettings(batch_size=args.batch_size, seed=args.seed, checkpoint_every=args.checkpoint_every,
                             freeze_text_encoder=args.freeze_text_encoder, parse_pretrain=args.parse_pretrain,
                             parse_lexicon=args.parse_lexicon)
    export = None if args.no_export else (args.export or str(Path(args.out) / "model"))
    trainer = train(args.out, args.steps, resume=args.resume, config=config,
                    settings=settings, lr=args.lr, export=export, loss_weight_cap=args.loss_weight_cap,
                    init_from=args.init_from, complete_share=args.complete_share, device=args.device,
                    decay_from=args.decay_from, decay_steps=args.decay_steps, colorless_share=args.colorless_share,
                    empty_share=args.empty_share, shapeless_share=args.shapeless_share, bare_share=args.bare_share,
                    agree_weight=args.agree_weight, agree_from=args.agree_from)
    recent = trainer.recent[-100:]
    mean = sum(recent) / len(recent) if recent else float("nan")
    print(f"step {trainer.step}, mean loss of the last {len(recent)} steps {mean:.4f}; checkpoint in {args.out}"
          + (f"; EMA model exported to {export}" if export else ""))
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    """Explain one prompt (MI, CMI, PID, CPID, attention) and write report.html, results.json and maps."""
    from .explain import run

    return run(args)


def cmd_serve(args: argparse.Namespace) -> int:
    """Start the local web explorer (prompt or image in, report out)."""
    from .serve import run

    return run(args)


def cmd_run(args: argparse.Namespace) -> int:
    """Per-word MI and CMI over an item file; resumes, and shards under `accelerate launch`."""
    from ..runs.words import run_words

    s = run_words(args.items, args.out, model=args.model, steps=args.steps, guidance=args.guidance, maps=args.maps,
                  retry_failed=args.retry_failed, items_per_call=args.items_per_call, settings=settings_from_args(args))
    from ..runs.summary import exit_status

    return exit_status(s)


def cmd_runs(args: argparse.Namespace) -> int:
    """Summarise runs (`runs show`) or write their merged results.jsonl (`runs collect`)."""
    from ..runs.summary import find_runs, format_summary, merge, summarize

    for d in find_runs(args.dir):
        if args.action == "collect":
            print(merge(d))
        else:
            print(format_summary(summarize(d)))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Run one of the papers' evaluations (``diffpid bench NAME``); each NAME registers its own command."""
    return args.bench_command(args)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one-line :class:`ParameterError` (exit status 2 in :func:`main`)."""

    def error(self, message: str):  # type: ignore[override]
        raise ParameterError(f"{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    """The ``diffpid`` parser: every estimator subcommand registers the same settings flags
    (:func:`~diffpid.settings.add_settings_arguments`) with its own default number of samples."""
    from .. import __version__

    p = _Parser(prog="diffpid", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"diffpid {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="MI on the exact Gaussian-mixture oracle against the closed form")
    d.add_argument("--images", type=int, default=4, help="images drawn from the mixture (default 4)")
    add_settings_arguments(d, defaults=DEMO_DEFAULTS)
    d.epilog = "--seed draws the images; image i's estimate uses seed + i. The mixture runs in float64 on the CPU."
    d.set_defaults(func=cmd_demo)

    t = sub.add_parser("train-shapes", help="train or resume the embedded shapes model (checkpoints in --out)",
                       description="Train the embedded shapes model from random initialisation with the recipe of "
                                   "the shipped weights (the defaults: parse-pretrained frozen BERT, coordinate UNet), "
                                   "checkpointing into --out; after a kill, the same command with --resume continues "
                                   "exactly where it stopped.")
    t.add_argument("--out", default="train-shapes", help="folder for checkpoint.pt and train.log")
    t.add_argument("--steps", type=int, default=None,
                   help="total UNet steps to reach (a resumed run counts from its checkpoint; default: the end of "
                        "the learning-rate cooldown, step 8000 for the recipe)")
    t.add_argument("--batch-size", type=int, default=32, help="scenes per step (a resumed run keeps its own)")
    t.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    t.add_argument("--device", default="cpu", help="where the model trains: cpu (default) or cuda; batches and noise "
                   "are drawn on the CPU either way, so a run can resume on another device")
    t.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.pt exactly where it stopped")
    t.add_argument("--lr", type=float, default=None, help="learning rate (default 5e-4, or the checkpoint's)")
    t.add_argument("--decay-from", type=int, default=None, metavar="STEP",
                   help="the learning rate stays constant until STEP, then falls linearly to zero over "
                        "--decay-steps (default 6800, or the checkpoint's)")
    t.add_argument("--decay-steps", type=int, default=None, metavar="N",
                   help="length of the cooldown; the run ends when it does (default 1200, or the checkpoint's; "
                        "0: a constant rate)")
    t.add_argument("--loss-weight-cap", type=float, default=None,
                   help="weight each sample's eps MSE by min(1 + 1/snr, cap); 0 = plain MSE (default 50, or the checkpoint's)")
    t.add_argument("--text-encoder", choices=("bert", "t5", "clip"), default=None,
                   help="text encoder of a fresh run (default: the shipped model's architecture; a resumed run "
                        "keeps its own)")
    t.add_argument("--pooled-text", action=argparse.BooleanOptionalAction, default=None,
                   help="fresh run: the UNet also adds a pooled caption summary to its timestep embedding")
    t.add_argument("--complete-share", type=float, default=None,
                   help="share of each batch drawn from complete two-object captions only, on top of the world's "
                        "process (default 0.7, or the checkpoint's)")
    t.add_argument("--colorless-share", type=float, default=None,
                   help="share of each batch drawn from partial captions that leave every colour open (the lone "
                        "fruit 'orange', a bare 'circle'), on top of the world's process (default 0, or the "
                        "checkpoint's)")
    t.add_argument("--shapeless-share", type=float, default=None,
                   help="share of each batch drawn from partial captions that leave every shape open (a bare "
                        "colour: 'red', 'a big blue'), on top of the world's process (default 0, or the checkpoint's)")
    t.add_argument("--bare-share", type=float, default=None,
                   help="share of each batch drawn from one-word captions without an article ('red', 'circle', "
                        "the fruit 'orange': the form a PID study gives a word alone), on top of the world's "
                        "process (default 0, or the checkpoint's)")
    t.add_argument("--agree-weight", type=float, default=None, metavar="W",
                   help="weight of a loss term that makes the UNet's predictions with the caption and with the "
                        "empty caption agree at noise levels from --agree-from on, where a perfect model's do "
                        "(default 0: none, or the checkpoint's)")
    t.add_argument("--agree-from", type=float, default=None, metavar="LOGSNR",
                   help="the log-SNR from which --agree-weight applies (default 1, or the checkpoint's)")
    t.add_argument("--empty-share", type=float, default=None,
                   help="share of each batch given the empty caption (the unconditional model), on top of the "
                        "world's process (default 0, or the checkpoint's)")
    t.add_argument("--parse-pretrain", type=int, default=1500, metavar="STEPS",
                   help="fresh run: first train the text encoder STEPS steps on each token's role, meaning and "
                        "the side its object goes to (about 1,000 reach 99.9%%; default 1500, 0 for none)")
    t.add_argument("--parse-lexicon", action=argparse.BooleanOptionalAction, default=False,
                   help="fresh run: the parse's meaning targets say which shape a shape word names (box = square, "
                        "the fruit orange = circle), as for the lineage model; default: each word its own class")
    t.add_argument("--freeze-text-encoder", action=argparse.BooleanOptionalAction, default=True,
                   help="fresh run: train the UNet only, keeping the (parse pretrained or copied) text encoder "
                        "(default: frozen)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--checkpoint-every", type=int, default=200)
    t.add_argument("--export", default=None,
                   help="folder to write the EMA model to at the end (diffusers layout; default --out/model)")
    t.add_argument("--no-export", action="store_true", help="do not export the EMA model at the end")
    t.add_argument("--init-from", default=None,
                   help="fresh run: start from this shapes model folder's weights (the UNet; the text encoder too "
                        "when it has the same architecture)")
    t.set_defaults(func=cmd_train_shapes)

    from .explain import add_arguments as explain_arguments

    e = sub.add_parser("explain", help="explain the words of a prompt; writes an HTML report, results.json and maps")
    explain_arguments(e)
    e.set_defaults(func=cmd_explain)

    from .serve import add_arguments as serve_arguments

    sv = sub.add_parser("serve", help="local web explorer: type a prompt or upload an image, see its maps (127.0.0.1)")
    serve_arguments(sv)
    sv.set_defaults(func=cmd_serve)

    r = sub.add_parser("run", help="per-word MI/CMI over an item file (.jsonl/.csv); resumable, shards with accelerate")
    r.add_argument("items", help="item file: JSON lines {\"image\": ..., \"prompt\": ..., \"words\": [...]} or CSV")
    r.add_argument("--out", required=True, help="root folder; the run goes to OUT/words-<hash of the parameters>")
    r.add_argument("--model", default=None, help="diffusers folder or hub id (default: the embedded shapes model)")
    r.add_argument("--steps", type=int, default=50, help="sampling steps for items without an image")
    r.add_argument("--guidance", type=float, default=None,
                   help="guidance scale for items without an image (default: the model's; 7.5 for Stable Diffusion)")
    r.add_argument("--maps", action="store_true", help="also save per-word pixel maps as OUT/.../maps/<id>.npz")
    r.add_argument("--retry-failed", action="store_true", help="compute items that failed before again")
    add_items_per_call_argument(r)
    add_settings_arguments(r, defaults=RUN_DEFAULTS)
    r.epilog = "--seed is the run seed: each item runs with its own seed, derived from it and the item's id."
    r.set_defaults(func=cmd_run)

    rs = sub.add_parser("runs", help="inspect dataset-scale runs: `runs show DIR`, `runs collect DIR`")
    rs.add_argument("action", choices=("show", "collect"), help="show: summary; collect: write results.jsonl")
    rs.add_argument("dir", help="a run folder, or the --out folder of `diffpid run` (all runs in it)")
    rs.set_defaults(func=cmd_runs)

    b = sub.add_parser("bench", help="the papers' evaluations: `diffpid bench NAME --out DIR` (resumable)")
    bench = b.add_subparsers(dest="bench", required=True)
    from . import bench as benches, studies

    for name, add, run, text in (
        ("localization", benches.add_localization, benches.localization,
         "mIoU of CMI, MI, attention and whole-image maps (shapes, COCO-IT)"),
        ("compositional", benches.add_compositional, benches.compositional,
         "caption ranking by information (shapes swap sets, ARO)"),
        ("intervention", benches.add_intervention, benches.intervention,
         "image change after omitting/swapping a word vs CMI and attention"),
        ("bias", studies.add_bias, studies.bias, "redundancy of attribute and object words vs planted bias"),
        ("synonyms", studies.add_synonyms, studies.synonyms, "redundancy of synonyms vs unrelated word pairs"),
        ("homonyms", studies.add_homonyms, studies.homonyms, "synergy of an ambiguous word with its neighbour"),
        ("uniqueness", studies.add_uniqueness, studies.uniqueness, "unique-information maps of two objects' words"),
    ):
        bs = bench.add_parser(name, help=text)
        add(bs)
        bs.set_defaults(func=cmd_bench, bench_command=run)

    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        import warnings

        warnings.showwarning = _warning_line
        check_arguments(args)
        return int(args.func(args) or 0)
    except ItemsFailedError as e:
        print(f"diffpid: error: {e}", file=sys.stderr)
        return EXIT_FAILED_ITEMS
    except DiffpidError as e:
        print(f"diffpid: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("diffpid: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
