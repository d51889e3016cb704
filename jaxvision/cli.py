"""The `jaxvision` command line.

    jaxvision train [--config=NAME_OR_PATH[:VARIANT]] [--workdir=DIR] [--config.KEY=VALUE ...]
    jaxvision eval --workdir=DIR [--best | --step=N] [--tta=none|flip|shift|ten_crop|multi_scale]
    jaxvision eval --ensemble DIR1 DIR2 ... [--tta=NAME] [--use_ema] [--best]
    jaxvision search [--config=NAME_OR_PATH[:VARIANT]] [--workdir=DIR] --trials=N --param=KEY:DIST:ARGS ...
                     [--seed=S] [--no_grid] [--config.KEY=VALUE ...]
    jaxvision predict --workdir=DIR IMAGE [IMAGE ...] [--top=K] [--invert] [--mnist_style] [--tta=NAME] [--use_ema] [--best | --step=N]
    jaxvision predict --workdir=SEGMENTATION_DIR IMAGE [IMAGE ...] [--out_dir=DIR] [--invert] [--use_ema] [--best | --step=N]
    jaxvision list
    jaxvision summary MODEL [--input_shape=H,W,C] [--num_classes=N] [--option=KEY=VALUE ...] [--depth=D]
                      [--train] [--format=text|csv|json]
    jaxvision prepare NAME [--data_dir=DIR]

A config is a Python file with `get_config(arg=None)` returning a locked ConfigDict; NAME looks in
`./experiments/NAME.py`, then the jaxvision checkout's `experiments/`, then the copy of it that the
wheel installs (so `jaxvision train` works after `pip install` from any folder). Only the
config file you name is executed (as a script would be); checkpoints, prepared data and results are
read as arrays and JSON, never unpickled.
"""

import argparse
import ast
import importlib.util
import json
import os
import sys

DEFAULT_CONFIG = "digits_lenet"
PREDICT_TOP = 5  # classes shown per image by `predict` on a classification workdir


def experiments_dirs() -> list[str]:
    """Folders searched for config names, first match wins: ./experiments, the checkout's
    experiments/ (editable installs), then the copy a wheel installs as jaxvision/experiments."""
    package_dir = os.path.dirname(os.path.abspath(__file__))
    candidates = [
        os.path.join(os.getcwd(), "experiments"),
        os.path.join(os.path.dirname(package_dir), "experiments"),
        os.path.join(package_dir, "experiments"),
    ]
    unique = []
    for folder in candidates:
        if os.path.isdir(folder) and folder not in unique:
            unique.append(folder)
    return unique


def list_configs() -> list[str]:
    """Config names found in the experiments folders (files with a get_config, not bench_*)."""
    names = set()
    for folder in experiments_dirs():
        for file_name in os.listdir(folder):
            if file_name.endswith(".py") and not file_name.startswith(("bench_", "_")):
                with open(os.path.join(folder, file_name)) as f:
                    if "def get_config" in f.read():
                        names.add(file_name[:-3])
    return sorted(names)


def resolve_config_path(name_or_path: str) -> str:
    """The file for a config name or path; ValueError listing known names otherwise."""
    if name_or_path.endswith(".py") or os.sep in name_or_path:
        if not os.path.isfile(name_or_path):
            raise ValueError(f"config file {name_or_path!r} does not exist")
        return name_or_path
    for folder in experiments_dirs():
        path = os.path.join(folder, f"{name_or_path}.py")
        if os.path.isfile(path):
            return path
    raise ValueError(f"unknown config {name_or_path!r}; valid names: {', '.join(list_configs()) or '(none found)'}")


def load_config(spec: str):
    """Load `NAME_OR_PATH[:VARIANT]` by running its `get_config(VARIANT)`."""
    name_or_path, _, variant = spec.partition(":")
    path = resolve_config_path(name_or_path)
    module_spec = importlib.util.spec_from_file_location(f"jaxvision_config_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"config file {path!r} has no get_config()")
    return module.get_config(variant or None)


def _parse_value(text: str, current):
    if isinstance(current, bool):
        lowered = text.lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ValueError(f"expected a boolean, got {text!r}")
    if isinstance(current, (int, float)) and not isinstance(current, bool):
        value = ast.literal_eval(text)
        if isinstance(current, int) and not isinstance(value, int):
            raise ValueError(f"expected an int, got {text!r}")
        return type(current)(value)
    if isinstance(current, (tuple, list)):
        value = ast.literal_eval(text)
        return tuple(value) if isinstance(value, (tuple, list)) else (value,)
    return text  # strings and placeholders


# Config keys holding a model's own options: any key may be added under them (`create_model`
# checks the names against the model's), and `--config.model_kwargs={}` replaces the whole dict,
# e.g. to drop the options of the config's model when --config.model picks another.
FREE_FORM_KEYS = ("model_kwargs",)


def _parse_literal(text: str):
    """A Python literal (number, bool, tuple, dict...), else the text itself as a string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def apply_overrides(config, overrides: list[str]):
    """Apply `KEY=VALUE` (dotted keys) to `config`; unknown keys fail listing the valid ones, except
    under `FREE_FORM_KEYS`."""
    import ml_collections

    for override in overrides:
        key, separator, text = override.partition("=")
        if not separator:
            raise ValueError(f"override {override!r} must look like --config.KEY=VALUE")
        if key in FREE_FORM_KEYS:
            value = _parse_literal(text)
            if not isinstance(value, dict):
                raise ValueError(f"bad value for config key {key!r}: expected a dict literal such as {{}}, got {text!r}")
            config[key] = ml_collections.ConfigDict(value)
            continue
        node = config
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            if part not in node:
                where = ".".join(parts[:depth]) or "config"
                raise ValueError(f"unknown config key {key!r}: {where} has no {part!r}; valid keys: {', '.join(sorted(node))}")
            node = node[part]
        parent = ".".join(parts[:-1])
        if parts[-1] not in node:
            if parent in FREE_FORM_KEYS:
                with node.unlocked():
                    node[parts[-1]] = _parse_literal(text)
                continue
            raise ValueError(
                f"unknown config key {key!r}: {parent or 'config'} has no {parts[-1]!r}; "
                f"valid keys: {', '.join(sorted(node))}"
            )
        try:
            value = _parse_value(text, node[parts[-1]])
        except (ValueError, SyntaxError) as error:
            raise ValueError(f"bad value for config key {key!r}: {error}") from None
        node[parts[-1]] = value  # A locked ConfigDict accepts new values for existing keys.
    return config


def _split_config_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    overrides, rest = [], []
    for argument in argv:
        if argument.startswith("--config."):
            overrides.append(argument[len("--config."):])
        else:
            rest.append(argument)
    return rest, overrides


def _configure_platform():
    # Keep noisy, harmless library logs out of the terminal.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)


TASKS = ("classification", "segmentation")


def trainer_for(task: str):
    """The trainer module of `config.task`."""
    if task == "classification":
        from jaxvision.trainers import classification

        return classification
    if task == "segmentation":
        from jaxvision.trainers import segmentation

        return segmentation
    raise ValueError(f"unknown config.task {task!r}; valid tasks: {', '.join(TASKS)}")


def configure_devices(config) -> str:
    """Expose the CPU devices `config` asks for before JAX starts; say which devices will train."""
    import jax

    from jaxvision.training import cpu_allocator, cpu_devices, cpu_fusions

    cpu_allocator.configure_cpu_allocator(config.cpu_allocator)
    cpu_devices.configure_cpu_parallelism(
        config.cpu_parallelism, config.cpu_devices or config.num_devices,
        (config.batch_size, config.eval_batch_size), config.cpu_convolutions,
    )
    devices = jax.devices()
    count = config.num_devices or len(devices)
    description = f"{count} {devices[0].platform.upper()} device{'s' * (count > 1)}"
    fusion_types = cpu_fusions.fusion_types_in_xla_flags()
    if devices[0].platform == "cpu" and fusion_types is not None:
        description += f" (XLA:CPU YNNPACK fusions: {fusion_types})"
    return description


def command_train(args, overrides) -> int:
    config = apply_overrides(load_config(args.config), overrides)
    trainer = trainer_for(config.task)
    workdir = args.workdir or os.path.join("workdirs", config.name)
    print(f"training {config.name} in {workdir} on {configure_devices(config)}", flush=True)
    results = trainer.train_and_evaluate(config, workdir)
    summary = {k: results[k] for k in sorted(results) if k.startswith("test_")}
    print(json.dumps(summary, indent=2))
    headline = f"mean IoU {results['test_mean_iou']:.4f}" if "test_mean_iou" in results else f"accuracy {results['test_accuracy']:.4f}"
    print(
        f"test {headline} after {results['num_steps']} steps "
        f"in {results['wall_time_seconds']:.1f} s; results in {os.path.join(workdir, 'results.json')}"
    )
    return 0


def command_eval(args, overrides) -> int:
    if overrides:
        raise ValueError("eval takes no --config.* overrides; it reads the workdir's config.json")
    if args.ensemble or args.tta != "none":
        return command_eval_averaged(args)
    if args.workdir is None:
        raise ValueError("eval needs --workdir=DIR (or --ensemble DIR1 DIR2 ...)")
    config_path = os.path.join(args.workdir, "config.json")
    task = "classification"
    if os.path.exists(config_path):
        with open(config_path) as f:
            task = json.load(f).get("task", "classification")
    results = trainer_for(task).evaluate_workdir(args.workdir, step=args.step, use_best=args.best)
    print(json.dumps(results, indent=2))
    return 0


def command_eval_averaged(args) -> int:
    """`eval --tta=NAME` on one workdir, or `eval --ensemble DIR...` (classification workdirs)."""
    from jaxvision.inference import evaluation

    if args.ensemble:
        if args.workdir or args.step is not None:
            raise ValueError("--ensemble takes the workdirs as its arguments; drop --workdir/--step")
        results = evaluation.evaluate_ensemble(args.ensemble, tta_name=args.tta, use_ema=args.use_ema,
                                               use_best=args.best)
    else:
        if args.workdir is None:
            raise ValueError("eval --tta needs --workdir=DIR")
        results = evaluation.evaluate_workdir_tta(args.workdir, tta_name=args.tta, step=args.step,
                                                  use_best=args.best)
    print(json.dumps(results, indent=2))
    return 0


def command_predict(args, overrides) -> int:
    """The top classes of image files under a trained classification workdir, or their class maps
    (mask and overlay PNGs) under a segmentation workdir."""
    if overrides:
        raise ValueError("predict takes no --config.* overrides; it reads the workdir's config.json")
    from jaxvision.training import loop

    if loop.read_workdir_config(args.workdir).get("task", "classification") == "segmentation":
        return _predict_segmentation(args)
    if args.out_dir is not None:
        raise ValueError("--out_dir is for segmentation workdirs (mask files); a classifier's predictions are printed")
    from jaxvision.inference import prediction

    predictions = prediction.predict_files(
        args.workdir, args.images, top_k=PREDICT_TOP if args.top is None else args.top, invert=args.invert,
        mnist_style=args.mnist_style, tta_name=args.tta, use_ema=args.use_ema, step=args.step, use_best=args.best,
    )
    if args.format == "json":
        print(json.dumps([{"file": p.path, "labels": p.labels, "names": p.names, "probabilities": p.probabilities}
                          for p in predictions], indent=2))
        return 0
    for p in predictions:
        classes = ", ".join(f"{name} {probability:.1%}" for name, probability in zip(p.names, p.probabilities))
        print(f"{p.path}: {classes}")
    return 0


def _predict_segmentation(args) -> int:
    from jaxvision.inference import segmentation_prediction

    classifier_only = {"--top": args.top is not None, "--mnist_style": args.mnist_style, "--tta": args.tta != "none"}
    if any(classifier_only.values()):
        given = ", ".join(name for name, used in classifier_only.items() if used)
        raise ValueError(f"{given}: for classification workdirs; {args.workdir!r} is a segmentation workdir")
    predictions = segmentation_prediction.segment_files(
        args.workdir, args.images, out_dir=args.out_dir, invert=args.invert, use_ema=args.use_ema, step=args.step,
        use_best=args.best,
    )
    if args.format == "json":
        print(json.dumps([{"file": p.path, "mask": p.mask_path, "overlay": p.overlay_path, "shape": p.shape,
                           "class_fractions": p.class_fractions} for p in predictions], indent=2))
        return 0
    for p in predictions:
        classes = ", ".join(f"{name} {fraction:.1%}" for name, fraction in p.class_fractions.items())
        print(f"{p.path}: {classes} -> {p.mask_path}, {p.overlay_path}")
    return 0


def command_search(args, overrides) -> int:
    from jaxvision.training import search

    config = apply_overrides(load_config(args.config), overrides)
    if config.task != "classification":
        raise ValueError(f"search runs classification configs, got config.task={config.task!r}")
    params = [search.parse_param(spec) for spec in args.param]
    workdir = args.workdir or os.path.join("workdirs", f"{config.name}_search")
    configure_devices(config)
    budget = f"{args.trials} random trials" + ("" if args.no_grid else " and a grid of the same budget")
    print(f"searching {', '.join(p.key for p in params)} for {config.name} in {workdir}: {budget}", flush=True)
    summary = search.run_search(config, workdir, params, num_trials=args.trials, seed=args.seed,
                                with_grid=not args.no_grid, metric=args.metric, mode=args.mode)
    for strategy, row in summary["best"].items():
        values = ", ".join(f"{p.key}={row[p.key]:.3g}" if isinstance(row[p.key], float) else f"{p.key}={row[p.key]}"
                           for p in params)
        print(f"best {strategy}: {args.metric} {row[args.metric]:.4f} with {values}")
    print(f"results in {os.path.join(workdir, 'results.csv')} and search.png")
    return 0


def command_list(args, overrides) -> int:
    del args, overrides
    from jaxvision import models
    from jaxvision.data import tfds as datasets

    from jaxvision.data import segmentation as segmentation_data
    from jaxvision.models import segmentation as segmentation_models

    print("models:   " + ", ".join(models.list_models()))
    print("segmentation models: " + ", ".join(segmentation_models.list_segmentation_models()))
    print("datasets: " + ", ".join(datasets.list_datasets()))
    print("segmentation datasets: " + ", ".join(segmentation_data.list_segmentation_datasets()))
    print("configs:  " + ", ".join(list_configs()))
    return 0


def command_summary(args, overrides) -> int:
    """Per-layer cost table (output shape, memory, parameters, multiply-adds) of a registered model."""
    if overrides:
        raise ValueError("summary takes no --config.* overrides; set model options with --option=KEY=VALUE")
    import csv
    import dataclasses

    from jaxvision import models
    from jaxvision.models import segmentation as segmentation_models

    options = {}
    for option in args.option:
        key, separator, text = option.partition("=")
        if not separator or not key:
            raise ValueError(f"--option {option!r} must look like KEY=VALUE, e.g. --option=image_size=384")
        options[key] = _parse_literal(text)
    if args.model in segmentation_models.SEGMENTATION_MODELS:
        model = segmentation_models.create_segmentation_model(args.model, num_classes=args.num_classes, **options)
        native = (224, 224, 3)
    else:
        model = models.create_model(args.model, num_classes=args.num_classes, **options)
        native = models.native_input_shape(args.model, **options)
    input_shape = native if args.input_shape is None else _parse_shape(args.input_shape)
    table = models.summary(model, input_shape, train=args.train)
    if args.depth is not None:
        table = table.at_depth(args.depth)
    if args.format == "json":
        print(json.dumps({"model": args.model, "input_shape": list(input_shape), "num_classes": args.num_classes,
                          "total_params": table.total_params, "total_macs": table.total_macs,
                          "total_activation_kb": table.total_activation_kb,
                          "rows": [dataclasses.asdict(row) for row in table.rows]}, indent=2))
    elif args.format == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=[field.name for field in dataclasses.fields(models.LayerSummary)])
        writer.writeheader()
        for row in table.rows:
            writer.writerow({**dataclasses.asdict(row), "output_shape": "x".join(map(str, row.output_shape))})
    else:
        shape = "x".join(map(str, input_shape))
        print(f"{args.model} on {shape} (HxWxC), {args.num_classes} classes: {table.total_params:,} parameters, "
              f"{table.total_macs / 1e9:.2f} G multiply-adds per image")
        print(table)
    return 0


def _parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(size) for size in text.replace("x", ",").split(","))
    except ValueError:
        raise ValueError(f"--input_shape must be H,W,C (e.g. 224,224,3), got {text!r}") from None
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"--input_shape must be three positive sizes H,W,C (e.g. 224,224,3), got {text!r}")
    return shape


def command_prepare(args, overrides) -> int:
    del overrides
    from jaxvision.data import segmentation as segmentation_data
    from jaxvision.data import tfds as datasets

    if args.name in segmentation_data.SEGMENTATION_DATASETS:
        builder = segmentation_data.prepare_segmentation_dataset(args.name, data_dir=args.data_dir, download=True)
    elif args.name in datasets.DATASETS:
        builder = datasets.prepare_dataset(args.name, data_dir=args.data_dir, download=True)
    else:
        names = datasets.list_datasets() + segmentation_data.list_segmentation_datasets()
        raise ValueError(f"unknown data set {args.name!r}; valid names: {', '.join(names)}")
    print(f"{args.name} prepared in {builder.data_dir}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxvision", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command")
    train = commands.add_parser("train", help="train a config (default: LeNet-5 on the embedded digits)")
    train.add_argument("--config", default=DEFAULT_CONFIG, help="NAME_OR_PATH[:VARIANT], e.g. digits_lenet:smoke")
    train.add_argument("--workdir", default=None, help="output folder (default: workdirs/<config name>)")
    train.set_defaults(handler=command_train)
    evaluate = commands.add_parser("eval", help="evaluate a trained workdir on the test split")
    evaluate.add_argument("--workdir", default=None)
    evaluate.add_argument("--step", type=int, default=None, help="a specific checkpoint step")
    evaluate.add_argument("--best", action="store_true", help="use the best checkpoint instead of the latest")
    evaluate.add_argument("--tta", default="none",
                          help="test-time augmentation: none | flip | shift | ten_crop | multi_scale "
                               "(must suit the data: shift, never flip, for digits)")
    evaluate.add_argument("--ensemble", nargs="+", default=None, metavar="WORKDIR",
                          help="average the test probabilities of these workdirs (seeds, checkpoints)")
    evaluate.add_argument("--use_ema", action="store_true", help="--ensemble: use each run's EMA parameters")
    evaluate.set_defaults(handler=command_eval)
    predicting = commands.add_parser("predict", help="classify (or segment) image files with a trained workdir")
    predicting.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...)")
    predicting.add_argument("--workdir", required=True, help="a trained classification or segmentation workdir")
    predicting.add_argument("--top", type=int, default=None, help=f"how many classes to show per image (default {PREDICT_TOP})")
    predicting.add_argument("--invert", action="store_true",
                            help="invert the pixels (dark ink on paper for a model trained on MNIST-style digits)")
    predicting.add_argument("--mnist_style", action="store_true",
                            help="crop, scale and centre each digit as MNIST's were (photos of handwritten digits)")
    predicting.add_argument("--tta", default="none", help="test-time augmentation, as for eval")
    predicting.add_argument("--use_ema", action="store_true", help="use the run's EMA parameters")
    predicting.add_argument("--step", type=int, default=None, help="a specific checkpoint step")
    predicting.add_argument("--best", action="store_true", help="use the best checkpoint instead of the latest")
    predicting.add_argument("--out_dir", default=None,
                            help="segmentation: where the mask and overlay PNGs go (default WORKDIR/predictions)")
    predicting.add_argument("--format", default="text", choices=("text", "json"))
    predicting.set_defaults(handler=command_predict)
    searching = commands.add_parser("search", help="random hyper-parameter search with short trials (+ a same-budget grid)")
    searching.add_argument("--config", default=DEFAULT_CONFIG, help="NAME_OR_PATH[:VARIANT] of the trials' base config")
    searching.add_argument("--workdir", default=None, help="output folder (default: workdirs/<config name>_search)")
    searching.add_argument("--trials", type=int, required=True, help="random trials (the grid gets the same budget)")
    searching.add_argument("--param", action="append", required=True,
                           help="KEY:loguniform:LOW:HIGH | KEY:uniform:LOW:HIGH | KEY:int:LOW:HIGH | KEY:choice:A,B")
    searching.add_argument("--seed", type=int, default=0, help="seed of the random draws (not of the trainings)")
    searching.add_argument("--no_grid", action="store_true", help="skip the same-budget grid")
    searching.add_argument("--metric", default="test_accuracy")
    searching.add_argument("--mode", default="max", choices=("max", "min"))
    searching.set_defaults(handler=command_search)
    listing = commands.add_parser("list", help="list models, data sets and configs")
    listing.set_defaults(handler=command_list)
    summarize = commands.add_parser("summary", help="per-layer table of a model: output shapes, memory, parameters, MACs")
    summarize.add_argument("model", help="a registered model (jaxvision list)")
    summarize.add_argument("--input_shape", default=None,
                           help="H,W,C of one image (default: the model's own, e.g. 224,224,3; 28,28,1 for LeNet-5)")
    summarize.add_argument("--num_classes", type=int, default=1000)
    summarize.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                           help="a model option (repeatable), e.g. --option=image_size=384")
    summarize.add_argument("--depth", type=int, default=None,
                           help="merge layers sharing their first D name parts (1: one row per block)")
    summarize.add_argument("--train", action="store_true", help="trace the training forward (e.g. GoogLeNet's aux heads)")
    summarize.add_argument("--format", default="text", choices=("text", "csv", "json"))
    summarize.set_defaults(handler=command_summary)
    prepare = commands.add_parser("prepare", help="download and prepare a data set (needs network for tfds ones)")
    prepare.add_argument("name")
    prepare.add_argument("--data_dir", default=None)
    prepare.set_defaults(handler=command_prepare)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    rest, overrides = _split_config_overrides(argv)
    if not rest or (rest[0].startswith("-") and rest[0] not in ("-h", "--help")):
        rest = ["train", *rest]  # `jaxvision` alone, or options only, means `jaxvision train`.
    args = build_parser().parse_args(rest)
    _configure_platform()
    from jaxvision.trainers.classification import NonFiniteLossError, TrainingInterrupted
    from jaxvision.data.tfds import DatasetNotPreparedError

    try:
        return args.handler(args, overrides)
    except TrainingInterrupted as interrupted:
        print(f"interrupted: {interrupted}", file=sys.stderr)
        return 130
    except (ValueError, TypeError, FileNotFoundError, DatasetNotPreparedError, NonFiniteLossError) as error:
        print(f"jaxvision {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
