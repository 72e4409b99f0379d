"""``diffpid explain "PROMPT"``: explain one prompt and write its report folder.

Bad input is caught before anything is computed: an existing ``--out`` (without
``--overwrite``), words of ``--words`` / ``--pair`` that are not in the prompt, an
unreadable ``--image``, a bad setting (``--seed``, ``--device``, ``--dtype``, ...). A model that cannot be loaded fails
before the analysis starts. The report is written atomically, so a failure or an
interruption leaves no half-written folder.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..report.maps import slugify
from ..report.save import check_output, remove_stale_partials
from ..settings import add_settings_arguments, settings_from_args

def add_arguments(p: argparse.ArgumentParser) -> None:
    """Register the options of ``diffpid explain`` on ``p``."""
    p.add_argument("prompt", help="the prompt whose words are explained")
    p.add_argument("--model", default=None,
                   help="diffusers model folder or hub id (default: the embedded shapes model)")
    p.add_argument("--image", default=None, help="analyse this image instead of generating one from the prompt")
    p.add_argument("--words", nargs="+", default=None, metavar="WORD",
                   help="the words to explain (default: every content word)")
    p.add_argument("--pair", nargs=2, default=None, metavar=("WORD1", "WORD2"),
                   help="the two words to decompose (default: the two of highest CMI)")
    p.add_argument("--redundancy", default="integrated", choices=("integrated", "per_snr"),
                   help="PID redundancy: minimum of integrated informations, or per noise level")
    p.add_argument("--no-attention", action="store_true", help="do not collect cross-attention maps")
    p.add_argument("--out", default=None, help="output folder (default: diffpid-out/<prompt slug>)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bars or status lines")
    add_settings_arguments(p)


def default_out(prompt: str) -> Path:
    """``diffpid-out/<slug of the prompt>``."""
    return Path("diffpid-out") / slugify(prompt, fallback="prompt")


def _check(args: argparse.Namespace, settings: Any) -> tuple[Path, Any]:
    """Validate everything that can be checked without the model; returns the output folder and the image.

    In this order: the prompt, the numbers, the seed and the device, the words and the pair
    (:func:`diffpid.explanation.check_request`), the output folder (:func:`~diffpid.report.save.check_output`,
    which also removes stale partial folders of killed runs), then the image is read.
    """
    from ..explanation import check_request

    words, args.pair = check_request(args.prompt, args.words, args.pair, redundancy=args.redundancy,
                                     settings=settings)
    if args.words is not None:
        args.words = list(words)  # repeats dropped
    out = Path(args.out) if args.out else default_out(args.prompt)
    check_output(out, args.overwrite)
    remove_stale_partials(out)
    image = None
    if args.image is not None:
        from ..models.images import to_rgb

        image = to_rgb(args.image)
    return out, image


def summary_lines(expl: Any) -> list[str]:
    """A short plain-text table of the values (nats, with standard errors)."""
    from ..report.format import format_pm as pm

    width = max(4, *(len(w) for w in expl.words))
    lines = [f"{'word':<{width}}  {'MI i_o (nats)':>20}  {'CMI i_o (nats)':>20}"]
    for w in expl.words:
        mi, cmi = expl.mi[w], expl.cmi[w]
        lines.append(f"{w:<{width}}  {pm(mi.value, mi.stderr):>20}  {pm(cmi.value, cmi.stderr):>20}")
    for kind in ("pid", "cpid"):
        dec = getattr(expl, kind)
        if dec is None:
            continue
        a, b = dec.source_1, dec.source_2
        names = (f"R({a},{b})", f"U({a})", f"U({b})", f"S({a},{b})")
        atoms = "  ".join(f"{n} = {pm(x.value, x.stderr)}" for n, x in zip(names, dec.atoms))
        lines.append(f"{kind.upper():<4}  {atoms}")
    return lines


def _silence_loaders() -> None:
    """Turn off the weight-loading progress bars of transformers and diffusers (``--quiet``)."""
    import diffusers
    import transformers

    transformers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.disable_progress_bar()


def run(args: argparse.Namespace) -> int:
    """Run ``diffpid explain`` with parsed ``args``; returns the exit status."""
    from ..explanation import explain

    settings = settings_from_args(args)
    if args.quiet:
        settings = settings.replace(progress=False)
    out, image = _check(args, settings)
    if args.quiet:
        _silence_loaders()
    else:
        print(f"explaining {args.prompt!r} with {args.model or 'the embedded model'} ...", flush=True)
    expl = explain(
        args.prompt, model=args.model, image=image, words=args.words, pair=args.pair, redundancy=args.redundancy,
        attention=not args.no_attention, settings=settings,
    )
    path = expl.save(out, overwrite=args.overwrite)
    print("\n".join(summary_lines(expl)))
    print(f"report: {Path(path) / 'report.html'}")
    return 0
