"""Arguments and commands of ``diffpid bench localization|compositional|intervention``.

Each ``add_NAME`` registers a bench's options (with the shared settings flags) and ``NAME(args)`` runs it
resumably, prints its table and returns the exit status; the computing lives in :mod:`diffpid.bench`.
"""

from __future__ import annotations

from typing import Any

from ..bench.compositional import DEFAULTS as COMPOSITIONAL_DEFAULTS
from ..bench.compositional_run import DATASETS, compositional_items, run_compositional
from ..bench.intervention import DEFAULTS as INTERVENTION_DEFAULTS
from ..bench.intervention_run import MODES, read_cases, run_intervention, shapes_cases, single_object_cases
from ..bench.localization import ATTENTION_METHODS, DEFAULTS as LOCALIZATION_DEFAULTS, METHODS
from ..bench.localization_run import coco_it_items, oracle_items, run_localization, shapes_items
from ..bench.metrics import THRESHOLDS
from ..errors import ParameterError
from ..runs.runner import process_state
from ..settings import add_items_per_call_argument, add_settings_arguments, settings_from_args


def add_localization(p: Any) -> None:
    """Arguments of ``diffpid bench localization``."""
    p.add_argument("--dataset", choices=("shapes", "coco-it"), default="shapes")
    p.add_argument("--root", default=None, help="COCO-IT folder: COCO-IT.csv, val2017/, annotations/instances_val2017.json")
    p.add_argument("--csv", default=None, help="COCO-IT CSV (default ROOT/COCO-IT.csv)")
    p.add_argument("--images", default=None, help="COCO images folder (default ROOT/val2017)")
    p.add_argument("--annotations", default=None, help="COCO instances JSON (default ROOT/annotations/instances_val2017.json)")
    p.add_argument("--items", type=int, default=None, help="items (default: 24 for shapes, every COCO-IT row)")
    p.add_argument("--start", type=int, default=0, help="first COCO-IT row")
    p.add_argument("--model", default=None, help="diffusers folder or hub id (default: the embedded shapes model); "
                   "'shapes-oracle': the exact denoiser of single centred objects (information methods only)")
    p.add_argument("--steps", type=int, default=20, help="DDIM inversion steps of the attention baseline")
    p.add_argument("--methods", default=None, help="comma-separated subset of " + ",".join(METHODS)
                   + " (default: all; without the attention ones on the oracle)")
    p.add_argument("--maps", action="store_true", help="also store every method's map per item")
    p.add_argument("--out", required=True, help="folder for the resumable run and the results table")
    add_items_per_call_argument(p, note="with attention_info among the methods items run one by one")
    add_settings_arguments(p, defaults=LOCALIZATION_DEFAULTS)
    p.epilog = ("--seed is the run seed: each item runs with its own seed, derived from it and the item's id; "
                "it also draws the shapes-world scenes. The papers use --samples 100.")


def localization(args: Any) -> int:
    """Run ``diffpid bench localization`` and print the table."""
    from ..bench.tables import to_markdown, write_table

    settings = settings_from_args(args)
    model, dataset = args.model, args.dataset
    methods = METHODS if args.methods is None else [m.strip() for m in args.methods.split(",") if m.strip()]
    if model == "shapes-oracle":
        from ..bench.shapes_oracle import ShapesOracle

        if args.dataset != "shapes":
            raise ParameterError("the shapes oracle knows the shapes world only; use --dataset shapes")
        model, dataset = ShapesOracle(), "shapes-oracle"
        items = oracle_items(24 if args.items is None else args.items, settings.seed)
        if args.methods is None:
            methods = [m for m in METHODS if m not in ATTENTION_METHODS]
    elif args.dataset == "shapes":
        items = shapes_items(24 if args.items is None else args.items, settings.seed)
    else:
        from ..datasets.coco_it import CocoIT

        data = CocoIT(args.root, csv_path=args.csv, images=args.images, annotations=args.annotations)
        items = coco_it_items(data, args.items, args.start)
    rep = run_localization(items, out=args.out, model=model, dataset=dataset, methods=methods, steps=args.steps,
                           maps=args.maps, items_per_call=args.items_per_call, settings=settings)
    if rep.scores and process_state().is_main_process:  # one table, written once under accelerate
        detail = {"thresholds": [float(t) for t in THRESHOLDS],
                  "miou_per_threshold": {sc.method: [float(v) for v in sc.sweep.per_threshold] for sc in rep.scores},
                  "run": str(rep.summary.directory)}
        write_table(args.out, f"localization-{dataset}", rep.table, extra=detail)
        print(to_markdown(rep.table))
    from ..runs.summary import exit_status

    return exit_status(rep.summary) or (0 if rep.scores else 1)


def add_compositional(p: Any) -> None:
    """Arguments of ``diffpid bench compositional``."""
    p.add_argument("--dataset", choices=DATASETS, default="shapes-attribute")
    p.add_argument("--root", default=None, help="ARO folder (VG: visual_genome_*.json + images/); order sets: "
                                                "the test-case JSON file or its folder")
    p.add_argument("--images", default=None, help="image folder (order sets: COCO 2014 / Flickr30k root)")
    p.add_argument("--items", type=int, default=None, help="items (default: 32 for shapes sets, all ARO items)")
    p.add_argument("--start", type=int, default=0, help="first ARO item")
    p.add_argument("--model", default=None, help="diffusers folder or hub id (default: the embedded shapes model); "
                   "'shapes-oracle': the exact single-object denoiser (dataset shapes-single only)")
    p.add_argument("--min-group", type=int, default=None, help="macro: leave out groups with fewer items "
                                                               "(default: 25 for vg-attribution, else 1)")
    p.add_argument("--out", required=True, help="folder for the resumable run and the results table")
    add_items_per_call_argument(p)
    add_settings_arguments(p, defaults=COMPOSITIONAL_DEFAULTS)
    p.epilog = ("--seed is the run seed: each item runs with its own seed, derived from it and the item's id; "
                "it also draws the shapes-world swap sets. --samples are per image, shared by every candidate and "
                "the empty prompt.")


def compositional(args: Any) -> int:
    """Run ``diffpid bench compositional`` and print the table."""
    from ..bench.tables import to_markdown, write_table

    settings = settings_from_args(args)
    model, dataset = args.model, args.dataset
    if model == "shapes-oracle":
        from ..bench.shapes_oracle import ShapesOracle

        if dataset != "shapes-single":
            raise ParameterError("the shapes oracle knows single centred objects only; use --dataset shapes-single")
        model, dataset = ShapesOracle(), "shapes-single-oracle"
    items = compositional_items(args.dataset, n=args.items, seed=settings.seed, root=args.root, images=args.images,
                                start=args.start)
    rep = run_compositional(items, out=args.out, dataset=dataset, model=model, min_count=args.min_group,
                            items_per_call=args.items_per_call, settings=settings)
    if rep.micro.items and process_state().is_main_process:  # one table, written once under accelerate
        detail = {"groups": [{"group": g.group, "accuracy": g.accuracy.value, "items": g.accuracy.items,
                              "included": g.included} for g in rep.macro.groups],
                  "standard_groups": [{"group": g.group, "accuracy": g.accuracy.value, "items": g.accuracy.items,
                                       "included": g.included} for g in rep.standard_macro.groups],
                  "run": str(rep.summary.directory)}
        write_table(args.out, f"compositional-{dataset}", rep.table, extra=detail)
        print(to_markdown(rep.table))
    from ..runs.summary import exit_status

    return exit_status(rep.summary) or (0 if rep.micro.items else 1)


def add_intervention(p: Any) -> None:
    """Arguments of ``diffpid bench intervention``."""
    p.add_argument("--items", default=None, help="CSV/JSONL with caption, word[, image, replacement, id] "
                   "(default: shapes-world scenes)")
    p.add_argument("--n", type=int, default=24, help="shapes-world items")
    p.add_argument("--mode", choices=MODES, default="omit", help="shapes world: omit the word or swap it")
    p.add_argument("--model", default=None, help="diffusers folder or hub id (default: the embedded shapes model); "
                   "'shapes-oracle': the exact single-object denoiser, on generated single-object captions")
    p.add_argument("--steps", type=int, default=100, help="DDIM steps of inversion, regeneration and attention")
    p.add_argument("--guidance", type=float, default=1.0, help="guidance of inversion and regeneration (1 = none)")
    p.add_argument("--lowest", type=float, default=None,
                   help="log-SNR the inversion stops at (default: the model's lowest, clipped to -12)")
    p.add_argument("--no-attention", action="store_true", help="skip the attention baseline")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--out", required=True, help="folder for the resumable run and the results table")
    add_items_per_call_argument(p, note="only the information estimates share calls; inversions, regenerations "
                                        "and attention run item by item")
    add_settings_arguments(p, defaults=INTERVENTION_DEFAULTS)
    p.epilog = ("--seed is the run seed: each item runs with its own seed, derived from it and the item's id; "
                "it also draws the shapes-world scenes and seeds the bootstrap.")


def intervention(args: Any) -> int:
    """Run ``diffpid bench intervention`` and print the table."""
    from ..bench.tables import to_markdown

    settings = settings_from_args(args)
    model, seed = args.model, settings.seed
    if model == "shapes-oracle":
        from ..bench.shapes_oracle import ShapesOracle

        model = ShapesOracle()
        cases, dataset = single_object_cases(args.n, seed, args.mode), "shapes-oracle"
        meta = {"world_seed": seed, "mode": args.mode}
    elif args.items is None:
        cases, dataset = shapes_cases(args.n, seed, args.mode), "shapes"
        meta = {"world_seed": seed, "mode": args.mode}
    else:
        cases, dataset, meta = read_cases(args.items), "file", {"items_file": str(args.items)}
    _, table = run_intervention(cases, args.out, model=model, steps=args.steps, guidance=args.guidance,
                                lowest=args.lowest, attention=not args.no_attention, resamples=args.resamples,
                                table_name=f"intervention-{dataset}", meta=meta, items_per_call=args.items_per_call,
                                settings=settings)
    print(to_markdown(table))
    from ..runs.summary import failed_items_exit

    return failed_items_exit(table.meta.get("failed", 0), table.meta.get("failed", 0) + table.meta.get("items", 0), args.out)
