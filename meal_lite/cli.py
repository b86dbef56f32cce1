"""The ``meal-lite`` command line: train, evaluate, export, predict, run the offline demo, print a configuration.

    meal-lite train [CONFIG] [section.key=value ...] [--profile P]
    meal-lite eval --weights PATH [--model NAME --data-root ROOT --dataset imagenette|imagenet|digits]
    meal-lite demo [--out runs/demo] [...]
    meal-lite dark-knowledge --out DIR [--held-out 3] [--seeds N] [...]
    meal-lite config [CONFIG] [section.key=value ...] [--profile P] [--world-size N]
    meal-lite cache [CONFIG] [section.key=value ...] [--profile P]   # soft labels, see meal_lite.data.softlabels
    meal-lite export RUN --out DIR [--onnx]     # the student in timm's hub layout (and ONNX)
    meal-lite predict MODEL IMAGE... [--top K]  # MODEL: a run folder or an exported folder

CONFIG omitted means the profile's packaged default (``meal_lite/config/defaults/<profile>.yaml``); the
profile is ``--profile``, else ``$MEAL_LITE_PROFILE``, else ``imagenette``. Every error meal-lite
knows about is printed as one line ``error: <sentence>`` with exit code 2, without a traceback.
The same entry point works under ``torchrun`` (``python -m meal_lite.cli train ...``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from meal_lite.errors import ConfigError, MealLiteError
from meal_lite.config.profiles import PROFILES

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def split_config_args(args: Sequence[str]) -> tuple[str | None, list[str]]:
    """``[CONFIG] [key=value ...]`` -> (config path or None, overrides).

    The first argument is the config path unless it contains ``=`` (and is not an existing file);
    every other argument must be an override.
    """
    args = list(args)
    path = None
    if args and ("=" not in args[0] or Path(args[0]).is_file()):
        path = args.pop(0)
    for arg in args:
        if "=" not in arg:
            raise ConfigError(
                f"Argument '{arg}' is not a section.key=value override; give the config path first, then "
                f"overrides such as train.epochs=3."
            )
    return path, args


def build_parser() -> argparse.ArgumentParser:
    """The argument parser and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="meal-lite", description="MEAL V2 ensemble knowledge distillation, small and reproducible."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{train,eval,export,predict,demo,dark-knowledge,config,cache}")

    for name, text in [
        ("train", "train a student (prints the resolved config first)"),
        ("config", "print the resolved configuration and exit"),
        ("cache", "run the teachers once over seeded crops and store their soft labels in soft_labels.path"),
    ]:
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument(
            "args", nargs="*", metavar="[CONFIG] [section.key=value]",
            help="a YAML config (default: the profile's packaged one) then overrides, e.g. train.epochs=3",
        )
        p.add_argument("--profile", choices=PROFILES, default=None, help="beats $MEAL_LITE_PROFILE")
        if name == "config":
            p.add_argument(
                "--world-size", type=int, default=None, metavar="N",
                help="show the batch split for N processes (default: $WORLD_SIZE, else 1)",
            )

    ev = sub.add_parser(
        "eval", help="top-1/top-5 of a checkpoint",
        description="Evaluate model weights. A meal-lite checkpoint (last.pt) is scored with its run's own data "
                    "settings and student unless an option below says otherwise.",
    )
    ev.add_argument("--weights", required=True, help="checkpoint file (state dict, last.pt, best.pt, hub file) or URL")
    ev.add_argument("--model", default=None, help="timm model name, e.g. resnet50 (default: the run's student)")
    ev.add_argument("--data-root", default=None, help="folder holding the dataset (default: the run's data.root)")
    ev.add_argument("--dataset", choices=("imagenette", "imagenet", "digits"), default=None,
                    help="default: the run's data.dataset, else imagenette")
    ev.add_argument("--split", default="val", help="val (default), train, or test for digits")
    ev.add_argument("--no-download", dest="download", action="store_false", help="never download ImageNette")
    ev.add_argument("--imagenette-size", choices=("160px", "320px", "full"), default=None,
                    help="default: the run's data.imagenette_size, else 160px")
    ev.add_argument("--batch-size", type=int, default=64)
    ev.add_argument("--num-workers", type=int, default=2)
    ev.add_argument("--image-size", type=int, default=None,
                    help="default: the run's data.image_size, else the model's own input size")
    ev.add_argument("--device", default="auto")

    ex = sub.add_parser(
        "export", help="write a run's student in timm's Hugging Face hub layout (and ONNX)",
        description="Write the student of a run folder as model.safetensors + config.json (timm.create_model('local-dir:DIR', "
        "pretrained=True) loads it), optionally with model.onnx checked by ONNX Runtime.",
    )
    ex.add_argument("run", metavar="RUN", help="a meal-lite train run folder (train.out) or its last.pt")
    ex.add_argument("--out", required=True, metavar="DIR", help="the folder to write (must not exist or be empty)")
    ex.add_argument("--onnx", action="store_true", help="also write model.onnx and check it with ONNX Runtime (extra [onnx])")

    pr = sub.add_parser("predict", help="top classes of image files under a trained student", description="Classify images.")
    pr.add_argument("model", metavar="MODEL", help="a run folder (train.out) or a folder written by meal-lite export")
    pr.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    pr.add_argument("--top", type=int, default=5, help="how many classes to print per image (default 5)")

    # `meal-lite demo ...` hands every argument to meal_lite.experiments.demo.main (its own parser: --out runs/demo,
    # --profile, --seeds, overrides...); this entry only lists the command in `meal-lite --help`.
    sub.add_parser("demo", help="the end-to-end demo (meal-lite demo --help for its options)", add_help=False)
    # Likewise `meal-lite dark-knowledge ...` goes to meal_lite.experiments.dark_knowledge_report.main.
    sub.add_parser(
        "dark-knowledge", help="a student learns a digit it never saw labelled (meal-lite dark-knowledge --help)", add_help=False
    )
    return parser


def _run_train(args: argparse.Namespace) -> int:
    from meal_lite.config.schema import load_config

    path, overrides = split_config_args(args.args)
    cfg = load_config(path, overrides, profile=args.profile)
    # torch is imported only once the configuration is valid: a mistyped key is answered at once.
    from meal_lite.training.distributed import cleanup
    from meal_lite.training.pipeline import train_from_config

    try:
        result = train_from_config(cfg)
    except KeyboardInterrupt:
        profile = ["--profile", args.profile] if args.profile else []
        again = " ".join(["meal-lite train", *args.args, "train.resume=true", *profile])
        last = Path(cfg.train.out) / "last.pt"
        if last.exists():
            print(
                f"interrupted; {last} holds the last checkpoint (an epoch end, or a train.checkpoint_every "
                f"step); continue with: {again}",
                file=sys.stderr,
            )
        else:
            print("interrupted before the first epoch finished; nothing to resume.", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        cleanup()
    if result.get("rank", 0):
        return 0  # under torchrun only rank 0 reports
    last = result.get("last") or {}
    top1 = last.get("val_top1")
    summary = f"done: {result['out_dir']}/last.pt"
    if top1 is not None:
        summary += f"; val top-1 {top1:.2f}%, top-5 {last.get('val_top5'):.2f}%"
    print(summary)
    return 0


def _run_config(args: argparse.Namespace) -> int:
    from meal_lite import settings
    from meal_lite.training.batching import describe_plan, plan_batches
    from meal_lite.config.schema import format_config, load_config

    path, overrides = split_config_args(args.args)
    cfg = load_config(path, overrides, profile=args.profile)
    world_size = args.world_size if args.world_size is not None else settings.torchrun_env().world_size
    if world_size < 1:
        raise ConfigError(f"--world-size must be >= 1, but was given {world_size}.")
    plan = plan_batches(cfg, world_size)
    print(format_config(cfg) + describe_plan(plan, cfg), end="")
    return 0


def _run_cache(args: argparse.Namespace) -> int:
    from meal_lite.config.schema import load_config

    path, overrides = split_config_args(args.args)
    cfg = load_config(path, overrides, profile=args.profile)
    from meal_lite.training.distributed import cleanup, init_distributed  # torch, once the config is valid
    from meal_lite.training.softlabel_cache import generate_cache

    try:
        manifest = generate_cache(cfg, ctx=init_distributed(cfg.train.device))
    finally:
        cleanup()
    if manifest.get("complete"):
        mb = sum(s["bytes"] for s in manifest["shards"]) / 1e6
        print(f"cache: {manifest['num_images']} images x {manifest['identity']['crops']} crops = {manifest['records']} "
              f"records, {manifest['bytes_per_crop']} bytes per crop, {len(manifest['shards'])} shard(s), {mb:.2f} MB "
              f"in {cfg.soft_labels.path}; mean tail mass beyond top-{manifest['identity']['top_k']}: "
              f"{manifest['tail_mass_mean']:.2e}")
    return 0


def _run_eval(args: argparse.Namespace) -> int:
    from meal_lite.training.eval_checkpoint import evaluate_checkpoint

    result = evaluate_checkpoint(
        args.model,
        args.weights,
        data_root=args.data_root,
        dataset=args.dataset,
        split=args.split,
        download=args.download,
        imagenette_size=args.imagenette_size,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        image_size=args.image_size,
        device=args.device,
        verbose=False,
    )
    print(f"{result['model']} on {result['dataset']} {args.split} at {result['image_size']} px: top-1 "
          f"{result['top1']:.2f}%  top-5 {result['top5']:.2f}%  ({result['n']} images)")
    return 0


def _run_export(args: argparse.Namespace) -> int:
    from meal_lite.training.export import export_run

    export_run(args.run, args.out, onnx=args.onnx)
    return 0


def _run_predict(args: argparse.Namespace) -> int:
    from meal_lite.training.predict import format_predictions, load_predictor, predict_images

    if args.top < 1:
        raise ConfigError(f"--top must be >= 1, but was given {args.top}.")
    predictions = predict_images(load_predictor(args.model), args.images, top=args.top)
    print(format_predictions(args.images, predictions), end="")
    return 0


def _run_demo(argv: list[str]) -> int:
    """Delegate to :func:`meal_lite.experiments.demo.main` with the arguments after ``demo``."""
    from meal_lite.experiments import demo

    result = demo.main(argv)
    return result if isinstance(result, int) else 0


def _run_dark_knowledge(argv: list[str]) -> int:
    """Delegate to :func:`meal_lite.experiments.dark_knowledge_report.main` with the arguments after ``dark-knowledge``."""
    from meal_lite.experiments import dark_knowledge_report

    dark_knowledge_report.main(argv)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``meal-lite`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["demo"]:
            return _run_demo(argv[1:])
        if argv[:1] == ["dark-knowledge"]:
            return _run_dark_knowledge(argv[1:])
        args = build_parser().parse_args(argv)
        if args.command == "train":
            return _run_train(args)
        if args.command == "config":
            return _run_config(args)
        if args.command == "cache":
            return _run_cache(args)
        if args.command == "export":
            return _run_export(args)
        if args.command == "predict":
            return _run_predict(args)
        return _run_eval(args)
    except MealLiteError as exc:
        message = " ".join(str(exc).split())  # always one line
        print(f"error: {message}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
