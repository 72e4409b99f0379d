"""Command-line arguments and commands of ``diffpid bench bias|synonyms|homonyms|uniqueness``.

Without a case file every study runs on the shapes world with the embedded model (or
``--model``); with ``--cases FILE`` (CSV / JSON lines: ``prompt, word_1, word_2`` and optional
``image, group, strength, conditional, key``) it runs on any model. ``bias --occupations FILE``
builds DiffusionPID's gender study from a list of occupations. ``--model shapes-oracle`` runs
the shapes-world studies on the exact denoiser of single centred objects
(:class:`~diffpid.bench.shapes_oracle.ShapesOracle`), with images drawn from it: what a
perfectly trained model would give.
"""

from __future__ import annotations

from typing import Any

from ..bench.pid_cases import bias_cases, bias_reference, homonym_cases, synonym_cases
from ..bench.pid_studies import DEFAULTS
from ..bench.pid_studies_run import occupation_cases, read_pair_cases, run_bias, run_contrast, run_uniqueness
from ..bench.tables import to_markdown
from ..bench.uniqueness import uniqueness_cases
from ..settings import add_items_per_call_argument, add_settings_arguments, settings_from_args

__all__ = ["add_bias", "add_homonyms", "add_synonyms", "add_uniqueness", "bias", "homonyms", "synonyms", "uniqueness"]

SYNONYM_NOTES = (
    "Shapes world: images of squares; the synonym pair is ('square', 'box'), the unrelated pairs are the image's "
    "colour or size word with 'square' or 'box'. PID of the two words against the empty prompt (joint: 'y1 y2').",
    "redundant_share = R / m(y1 y2): near 1 when the words say the same thing, about min / (m1 + m2) <= 1/2 when "
    "their informations add up. Raw redundancy R = min(m1, m2) does not tell synonyms from unrelated words that "
    "carry as much information. redundant_fraction = R / max(m1, m2) needs no joint prompt ('square box' is "
    "outside the world's grammar): 1 for synonyms, i(size or colour) / i(shape) or its inverse otherwise.",
)
HOMONYM_NOTES = (
    "Shapes world: 'orange' before a shape word is the colour, alone it is the fruit (a circle of any colour). "
    "Homonym pairs: ('orange', SHAPE) in 'a orange SHAPE'; controls: other colours with the same shapes. PID against "
    "the empty prompt with the full prompt as the joint; synergy S = m12 - m1 - m2 + R.",
    "A perfect model, standard estimator, circles: S = log 7 = 1.95 nats for ('orange', 'circle') (the colour "
    "appears only jointly) against log 4 = 1.39 for other colours (their informations add up).",
)


ORACLE = "shapes-oracle"


def _model(args: Any) -> tuple[Any, bool]:
    """The model argument and whether images must be generated (the oracle draws its own)."""
    if args.model == ORACLE:
        from ..bench.shapes_oracle import ShapesOracle

        return ShapesOracle(), True
    return args.model, bool(getattr(args, "generated", False))


def _common(p: Any) -> None:
    p.add_argument("--model", default=None, help="diffusers folder or hub id (default: the embedded shapes model); "
                   f"'{ORACLE}': the exact single-object denoiser of the shapes world")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--out", required=True, help="folder for the resumable run and the results table")
    add_items_per_call_argument(p, "cases")
    add_settings_arguments(p, defaults=DEFAULTS)
    p.epilog = ("--seed is the run seed: each item runs with its own seed, derived from it and the item's id; "
                "it also draws the shapes-world scenes and seeds the bootstrap.")


def _kw(args: Any, dataset: str, meta: dict) -> dict:
    return dict(model=_model(args)[0], items_per_call=args.items_per_call, settings=settings_from_args(args),
                meta={"dataset": dataset, **meta})


def _name(study: str, dataset: str) -> str:
    return f"{study}-{dataset}"


def _shapes(args: Any) -> str:
    """The dataset name of a shapes-world run: ``shapes``, or ``shapes-oracle`` on the oracle."""
    return "shapes-oracle" if args.model == ORACLE else "shapes"


def _status(table: Any, args: Any) -> int:
    """0, or 3 (with a line on stderr) when cases failed."""
    from ..runs.summary import failed_items_exit

    failed = table.meta.get("failed", 0)
    return failed_items_exit(failed, failed + table.meta.get("cases", table.meta.get("items", 0)), args.out)


def add_bias(p: Any) -> None:
    """Arguments of ``diffpid bench bias``."""
    p.add_argument("--cases", default=None, help="CSV/JSONL of prompt, word_1 (attribute), word_2 (object)[, strength, image]")
    p.add_argument("--occupations", default=None, help="text file, one occupation per line (DiffusionPID gender study)")
    p.add_argument("--genders", default="male,female", help="comma-separated gender words for --occupations")
    p.add_argument("--template", default="a photo of a {gender} {occupation}", help="prompt template for --occupations")
    p.add_argument("--images", type=int, default=2, help="images per pair")
    p.add_argument("--generated", action="store_true", help="shapes world: generate the images instead of drawing scenes")
    _common(p)


def bias(args: Any) -> int:
    """Run the bias study and print its table."""
    if args.cases:
        cases, dataset = read_pair_cases(args.cases, group="bias"), "file"
    elif args.occupations:
        genders = [g.strip() for g in args.genders.split(",") if g.strip()]
        cases, dataset = occupation_cases(args.occupations, genders, args.template, args.images), "occupations"
    else:
        cases, dataset = bias_cases(args.images, args.seed, _model(args)[1]), _shapes(args)
    reference = bias_reference() if dataset.startswith("shapes") else None
    _, table = run_bias(cases, args.out, resamples=args.resamples, table_name=_name("bias", dataset),
                        reference=reference, **_kw(args, dataset, {"images_per_pair": args.images}))
    print(to_markdown(table))
    return _status(table, args)


def add_synonyms(p: Any) -> None:
    """Arguments of ``diffpid bench synonyms``."""
    p.add_argument("--cases", default=None, help="CSV/JSONL of prompt, word_1, word_2, group (synonym / unrelated)[, image]")
    p.add_argument("--images", type=int, default=8, help="shapes world: square scenes")
    _common(p)


def synonyms(args: Any) -> int:
    """Run the synonym study and print its table."""
    if args.cases:
        cases, dataset = read_pair_cases(args.cases), "file"
    else:
        cases, dataset = synonym_cases(args.images, args.seed, _model(args)[1]), _shapes(args)
    _, table = run_contrast("synonyms", cases, args.out, first="synonym", second="unrelated",
                            metrics=("redundant_share", "redundant_fraction", "standard_redundant_share",
                                     "redundancy", "unique_1", "unique_2", "pixel_redundancy"),
                            title="Synonyms: redundancy of synonyms against unrelated words",
                            notes=SYNONYM_NOTES if dataset != "file" else (), resamples=args.resamples,
                            table_name=_name("synonyms", dataset),
                            **_kw(args, dataset, {"images": args.images}))
    print(to_markdown(table))
    return _status(table, args)


def add_homonyms(p: Any) -> None:
    """Arguments of ``diffpid bench homonyms``."""
    p.add_argument("--cases", default=None, help="CSV/JSONL of prompt, word_1, word_2, group (homonym / control)[, image]")
    p.add_argument("--images", type=int, default=6, help="shapes world: scenes per prompt")
    p.add_argument("--shapes", default="circle", help="shapes world: comma-separated shape words")
    p.add_argument("--controls", default="red,blue,green", help="shapes world: control colours")
    _common(p)


def homonyms(args: Any) -> int:
    """Run the homonym study and print its table."""
    if args.cases:
        cases, dataset = read_pair_cases(args.cases), "file"
    else:
        split = lambda v: [w.strip() for w in v.split(",") if w.strip()]  # noqa: E731
        cases = homonym_cases(args.images, args.seed, split(args.controls), split(args.shapes), _model(args)[1])
        dataset = _shapes(args)
    _, table = run_contrast("homonyms", cases, args.out, first="homonym", second="control",
                            metrics=("synergy", "standard_synergy", "redundancy", "mi_12"),
                            title="Homonyms: synergy of the ambiguous word with its neighbour",
                            notes=HOMONYM_NOTES if dataset != "file" else (), resamples=args.resamples,
                            table_name=_name("homonyms", dataset),
                            **_kw(args, dataset, {"images": args.images}))
    print(to_markdown(table))
    return _status(table, args)


def add_uniqueness(p: Any) -> None:
    """Arguments of ``diffpid bench uniqueness``."""
    p.add_argument("--n", type=int, default=16, help="two-object shapes scenes")
    p.add_argument("--role", choices=("shape", "color", "size"), default="shape", help="which word of each object")
    p.add_argument("--figure-cases", type=int, default=6, help="cases drawn in uniqueness.png")
    p.add_argument("--grow", type=int, default=1, help="grow the object masks by this many pixels for the shares")
    _common(p)


def uniqueness(args: Any) -> int:
    """Run the uniqueness-map study on the shapes world and print its table."""
    from ..errors import ParameterError

    if args.model == ORACLE:
        raise ParameterError("the shapes oracle has one object per image; uniqueness maps need two: use a model")
    kw = _kw(args, "shapes", {"role": args.role})
    _, table = run_uniqueness(uniqueness_cases(args.n, args.seed, args.role), args.out,
                              figure_cases=args.figure_cases, table_name="uniqueness-shapes", grow=args.grow, **kw)
    print(to_markdown(table))
    return _status(table, args)
