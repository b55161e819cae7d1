"""The ``cct-fast`` command line.

Parsing, ``--help`` and ``models`` need no TensorFlow; each other command imports what it
uses when it runs.
"""

from __future__ import annotations

import argparse
import os
import sys


def _convert(args):
    import cct_fast

    model = cct_fast.create_model(
        args.model, num_classes=args.num_classes, img_size=args.img_size, weights=args.checkpoint
    )
    cct_fast.save_weights(model, args.output)
    print(f"Wrote {args.output}: {args.model}, {model.count_params():,} parameters.")


def _export(args):
    from pathlib import Path

    import cct_fast
    from cct_fast.core.text_model import TextCCT
    from cct_fast.export import load_onnx, to_onnx
    from cct_fast.weights.keras_files import load_keras_model

    source = Path(args.model)
    encoder = run = None
    if source.is_dir():
        from cct_fast.train.evaluation import load_run

        if args.weights:
            raise cct_fast.ConfigError("A run folder exports its best weights: drop --weights.")
        run = load_run(source)
        model, encoder = run.model, run.encoder
    elif source.suffix == ".keras":
        model = load_keras_model(args.model)
        if args.weights:
            cct_fast.load_weights(model, args.weights)
    else:
        model = cct_fast.create_model(args.model, weights=args.weights)
    if args.format == "savedmodel":
        return _export_saved_model(args, model, encoder)
    if args.format == "tflite":
        return _export_tflite(args, model, run)
    if args.raw_text and encoder is None:
        raise cct_fast.ConfigError(
            "--raw-text exports a text run folder: the tokenizer in the graph is its "
            "encoder.json's."
        )
    int8 = _int8_data(args, run) if args.int8 else {}
    dtype = "int8" if args.int8 else "float16" if args.fp16 else "float32"
    to_onnx(
        model,
        args.output,
        opset=args.opset,
        batch_size=args.batch_size,
        dtype=dtype,
        optimize=args.optimize,
        encoder=encoder if args.raw_text else None,
        **int8,
    )
    if args.raw_text:
        inputs = (
            "input 'texts', a batch of strings, tokenized in the graph by onnxruntime-extensions' "
            "operators; outputs 'logits' and 'probabilities'"
        )
    elif isinstance(model, TextCCT):
        inputs = (
            f"inputs 'token_ids' int32 and 'mask' bool, each (batch, {model.config.seq_len}); "
            "the tokenizer stays in TensorFlow (tensorflow-text has no ONNX converter), so "
            "encode texts with the run's encoder.json, or export --raw-text (or --format "
            "savedmodel) for raw strings in"
        )
    else:
        inputs = "input 'images' float32 NHWC"
    checked = "checked in ONNX Runtime"
    if args.int8:
        checked += f": {load_onnx(args.output, providers=['CPUExecutionProvider']).int8_check}"
    print(
        f"Wrote {args.output} ({dtype}{', fused' if args.optimize else ''}): {inputs}; {checked}."
    )


def _export_tflite(args, model, run):
    from cct_fast.export import to_tflite

    _refuse_flags(args, ("--opset", "--optimize", "--raw-text"), "tflite")
    # LiteRT's int8 quantizes activations as it runs: no calibration images.
    int8 = _int8_data(args, run, calibrate=False) if args.int8 else {}
    dtype = "int8" if args.int8 else "float16" if args.fp16 else "float32"
    batch = args.batch_size or 1
    to_tflite(model, args.output, dtype=dtype, batch_size=batch, **int8)
    checked = (
        "its test accuracy checked against the Keras model's"
        if args.int8
        else "checked against Keras"
    )
    print(
        f"Wrote {args.output} (LiteRT, {dtype}, batch {batch}): {checked} in the ai-edge-litert "
        "interpreter."
    )


def _int8_data(args, run, calibrate=True):
    """The run's test split to check the int8 graph's accuracy on, and (``calibrate``)
    calibration images (or texts) from its training split."""
    import cct_fast
    from cct_fast.export.quantize import CALIBRATION_EXAMPLES
    from cct_fast.train.evaluation import run_examples

    if run is None:
        raise cct_fast.ConfigError(
            "--int8 exports a run folder: its training images calibrate the int8 graph and its "
            "test split checks its accuracy. For another model call "
            "cct_fast.export.to_onnx(model, path, dtype='int8', calibration=..., validation=...)."
        )
    if args.fp16:
        raise cct_fast.ConfigError("--int8 and --fp16 are two precisions: choose one.")
    data = {"validation": run_examples(run, "test")}
    if calibrate:
        data["calibration"], _ = run_examples(run, "train", limit=CALIBRATION_EXAMPLES)
    if args.max_accuracy_drop is not None:
        data["max_accuracy_drop"] = args.max_accuracy_drop
    return data


def _export_saved_model(args, model, encoder):
    from cct_fast.export.saved_model import OUTPUT, SIGNATURE, to_saved_model

    _refuse_flags(args, _ONNX_ONLY, "savedmodel")
    to_saved_model(model, args.output, encoder=encoder)
    inputs = "a batch of strings" if encoder is not None else "float32 NHWC images"
    print(
        f"Wrote {args.output}: SavedModel, signature {SIGNATURE!r}: {inputs} -> "
        f"{OUTPUT!r}; checked after reloading it in a fresh process."
    )


_ONNX_ONLY = ("--opset", "--batch-size", "--fp16", "--optimize", "--int8", "--raw-text")


def _refuse_flags(args, flags, export_format):
    """Refuse the ``flags`` given that an export in ``export_format`` has no use for."""
    import cct_fast

    given = [flag for flag in flags if getattr(args, flag[2:].replace("-", "_"))]
    if given:
        raise cct_fast.ConfigError(
            f"{', '.join(given)} apply to ONNX exports only: drop them with --format "
            f"{export_format}."
        )


def _describe(args):
    import keras

    import cct_fast
    from cct_fast.core.costs import costs

    model = cct_fast.create_model(args.model)
    model.summary()
    _print_card(args.model)
    config = model.config
    trainable = sum(int(keras.ops.size(v)) for v in model.trainable_weights)
    cost = costs(config)
    if hasattr(config, "seq_len"):
        size, example = f"{config.seq_len} words", "text"
    else:
        size, example = "x".join(map(str, (*config.image_size, config.n_input_channels))), "image"
    print(
        f"{args.model}: input {size}, {config.sequence_length} tokens"
        f"{' + class token' if config.num_prefix_tokens else ''}; parameters "
        f"{model.count_params():,} ({trainable:,} trainable, "
        f"{model.count_params() - trainable:,} fixed); MACs per {example} "
        f"{cost.official_macs / 1e9:.3f} G (convolutions and linears, as the official "
        f"figures count), {cost.macs / 1e9:.3f} G with the attention matmuls."
    )


def _print_card(name):
    """What the official release says about ``name``: the dataset its head and statistics are
    for, its checkpoint and the official configs that train it."""
    from cct_fast.core.names import model_card

    card = model_card(name)
    facts = []
    if card.statistics is not None:
        stats = card.statistics
        facts.append(
            f"head and statistics for {card.dataset} ({stats.num_classes} classes; mean "
            f"{stats.mean}, std {stats.std})"
        )
    if card.weights is not None:
        facts.append(
            f"official checkpoint {card.weights.url} ({card.weights.trained_on}: "
            'weights="official")'
        )
    if card.configs:
        facts.append(f"official configs {', '.join(card.configs)} (--recipe NAME)")
    if facts:
        print(f"{name}: {'; '.join(facts)}.")


def _train(args):
    settings = dict(
        model=args.model,
        dataset=args.dataset,
        epochs=args.epochs,
        batch_size=args.batch_size,
        img_size=args.img_size,
        precision=args.precision,
        implementation=args.implementation,
        jit_compile=args.jit,
        seed=args.seed,
        seq_len=args.seq_len,
        embeddings=args.embeddings,
        freeze_embeddings=args.freeze_embeddings,
        tensorboard=args.tensorboard,
    )
    from cct_fast.train.preflight import check_run

    data = check_run(args.out, args.resume, args.recipe, **settings)
    from cct_fast import train

    try:
        run = train.fit(
            out=args.out,
            resume=args.resume,
            recipe_file=args.recipe,
            distribute=args.distribute or "",
            data=data,
            **settings,
        )
    except KeyboardInterrupt:
        return 130
    best = max(run.history, key=lambda row: row["test_accuracy"])
    print(
        f"{run.recipe.model} on {run.recipe.dataset}: best test accuracy "
        f"{best['test_accuracy']:.4f} (epoch {best['epoch']}), last "
        f"{run.history[-1]['test_accuracy']:.4f}, {sum(r['seconds'] for r in run.history):.0f} s "
        f"of training; run folder {run.folder}"
    )
    return 0


def _evaluate(args):
    from cct_fast import train

    result = train.evaluate(args.source, args.dataset, model=args.model)
    print(f"test accuracy {result['accuracy']:.4f}, loss {result['loss']:.4f}")


def _predict(args):
    from cct_fast.train.predict import predict

    for shown, classes in zip(
        args.inputs, predict(args.run_dir, args.inputs, top=args.top), strict=True
    ):
        long_text = len(shown) > 60 and not os.path.exists(shown)
        label = shown[:57] + "..." if long_text else shown
        ranked = ", ".join(f"{name} {probability:.3f}" for name, probability in classes)
        print(f"{label}: {ranked}")


def _models(args):
    from cct_fast.core.names import close_model_names, list_models

    names = list_models(args.pattern)
    if not names:
        close = close_model_names(args.pattern)
        hint = f" Close names: {', '.join(close)}." if close else ""
        print(
            f"cct-fast models: no model name matches {args.pattern!r}.{hint} `cct-fast models` "
            f"lists all {len(list_models())}.",
            file=sys.stderr,
        )
        return 1
    print("\n".join(names))


def _image_size(text):
    """``"224"`` -> 224, ``"224x320"`` -> (224, 320)."""
    try:
        sides = tuple(int(side) for side in text.lower().split("x"))
    except ValueError:
        sides = ()
    if len(sides) not in (1, 2):
        raise argparse.ArgumentTypeError(
            f"expected SIDE or HEIGHTxWIDTH, e.g. 224 or 224x320; got {text!r}"
        )
    return sides[0] if len(sides) == 1 else sides


def build_parser():
    from cct_fast.compute import IMPLEMENTATIONS
    from cct_fast.train.recipe import PRECISIONS

    parser = argparse.ArgumentParser(
        prog="cct-fast",
        description="Compact Transformers (CCT, CVT, ViT-Lite) on Keras 3: "
        "official names, checkpoint conversion, ONNX export, training.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    convert = commands.add_parser(
        "convert", help="convert an official PyTorch checkpoint to Keras weights"
    )
    convert.add_argument("checkpoint", help="official .pth/.pt checkpoint")
    convert.add_argument("--model", required=True, help="official model name, e.g. cct_7_3x1_32")
    convert.add_argument("--num-classes", type=int, help="classes of the new head, if different")
    convert.add_argument(
        "--img-size",
        type=_image_size,
        help="image size, SIDE or HEIGHTxWIDTH, if different (resizes the PE)",
    )
    convert.add_argument("-o", "--output", required=True, help="OUT.weights.h5 or OUT.keras")
    convert.set_defaults(run=_convert)

    export = commands.add_parser(
        "export",
        help="export a model to ONNX, a SavedModel or LiteRT, checked before it is written",
    )
    export.add_argument("model", help="official model name, a .keras file or a run folder")
    export.add_argument("-o", "--output", required=True, help="OUT.onnx, or a folder")
    export.add_argument(
        "--format",
        choices=["onnx", "savedmodel", "tflite"],
        default="onnx",
        help="onnx (default); a TensorFlow SavedModel for TF Serving: raw strings (a text "
        "run) or float NHWC images in, class probabilities out; or tflite, LiteRT for phones "
        "(batch 1 unless --batch-size)",
    )
    export.add_argument("--weights", help=".pth/.pt checkpoint or Keras weights to load first")
    export.add_argument("--opset", type=int, help="ONNX opset (default 17)")
    export.add_argument("--batch-size", type=int, help="fix the batch size (default: dynamic)")
    export.add_argument(
        "--fp16", action="store_true", help="compute in float16 as mixed_float16 does (for GPUs)"
    )
    export.add_argument(
        "--optimize",
        action="store_true",
        help="use ONNX Runtime's fused attention, LayerNorm and GELU operators",
    )
    export.add_argument(
        "--int8",
        action="store_true",
        help="a run folder in int8 (ONNX: static quantization calibrated on its training "
        "images; tflite: LiteRT's dynamic range), refused if its test accuracy drops more than "
        "--max-accuracy-drop",
    )
    export.add_argument(
        "--raw-text",
        action="store_true",
        help="a text run folder: the ONNX graph takes strings and tokenizes them with the run's "
        "vocabulary (onnxruntime-extensions' operators; running it needs that package), "
        "returning logits and probabilities",
    )
    export.add_argument(
        "--max-accuracy-drop",
        type=float,
        help="with --int8: top-1 accuracy the int8 graph may lose on the test split, as a "
        "fraction (default: one point, as to_onnx)",
    )
    export.set_defaults(run=_export)

    describe = commands.add_parser(
        "describe", help="layers, parameters, sequence length and MACs of a model"
    )
    describe.add_argument("model", nargs="?", default="cct_7_3x1_32")
    describe.set_defaults(run=_describe)

    train = commands.add_parser("train", help="train with the official recipe (resumable)")
    train.add_argument("--model", help="official model name (default cct_7_3x1_32)")
    train.add_argument(
        "--dataset",
        help="images: digits, cifar10, cifar100, folder:PATH, imagenet:PATH, flowers102[:PATH] "
        "or tfds:NAME (default cifar10); texts: "
        "fortunes, agnews, trec, csv:PATH or folder:PATH (default fortunes)",
    )
    train.add_argument("--epochs", type=int)
    train.add_argument("--batch-size", type=int)
    train.add_argument(
        "--img-size",
        type=int,
        help="image models: train at this side, not the model name's (its positional "
        "embedding, and one loaded from --recipe's weights, resized)",
    )
    train.add_argument(
        "--jit",
        dest="jit",
        action="store_true",
        default=None,
        help="compile the train step with XLA",
    )
    train.add_argument("--no-jit", dest="jit", action="store_false")
    train.add_argument("--precision", choices=PRECISIONS)
    train.add_argument(
        "--implementation",
        choices=IMPLEMENTATIONS,
        help="how the layers compute (default auto: the custom C++/CUDA ops where they were "
        "measured 1.3x faster, else fused)",
    )
    train.add_argument(
        "--seed",
        type=int,
        help="seeds the weights, the data order, augmentation and dropout (default 0)",
    )
    train.add_argument("--seq-len", type=int, help="text models: pieces per text (default 64)")
    train.add_argument(
        "--embeddings", help="text models: GloVe-format word vectors for the embedding table"
    )
    train.add_argument(
        "--freeze-embeddings",
        action="store_true",
        default=None,
        help="text models: keep the --embeddings vectors fixed",
    )
    train.add_argument(
        "--recipe",
        help="JSON or YAML file overriding recipe settings, an official config file "
        "(timm's settings), or an official config's name (e.g. cct_7-7x2_flowers102)",
    )
    train.add_argument(
        "--tensorboard",
        action="store_true",
        default=None,
        help="also write each epoch's figures and the first augmented batch to "
        "RUN/tensorboard (tensorboard --logdir RUN)",
    )
    train.add_argument(
        "--distribute",
        choices=["mirrored", "multiworker"],
        help="train on every local GPU (mirrored) or on the cluster in TF_CONFIG "
        "(multiworker, the same command on each worker); --batch-size is the global batch",
    )
    train.add_argument("--out", help="run folder (default runs/MODEL-DATASET-TIME)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out")
    train.set_defaults(run=_train)

    evaluate = commands.add_parser("evaluate", help="test accuracy of a run or weights file")
    evaluate.add_argument("source", help="run folder (its best weights) or a weights file")
    evaluate.add_argument("--dataset", required=True)
    evaluate.add_argument("--model", help="model name, for a weights file")
    evaluate.set_defaults(run=_evaluate)

    predict = commands.add_parser(
        "predict", help="top classes of a trained run for image files or texts"
    )
    predict.add_argument("run_dir", help="run folder (its best weights, classes and encoder)")
    predict.add_argument("inputs", nargs="+", help="image files, or texts for a text model")
    predict.add_argument("--top", type=int, default=3, help="classes shown per input")
    predict.set_defaults(run=_predict)

    models = commands.add_parser("models", help="list the official model names")
    models.add_argument("pattern", nargs="?", help="shell-style filter, e.g. 'cct_7*'")
    models.set_defaults(run=_models)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is first imported
    from cct_fast.errors import CctFastError

    try:
        return args.run(args) or 0
    except (CctFastError, FileNotFoundError) as error:
        # what was asked cannot be done (a bad file, name or setting): 2, as argparse's own
        print(f"cct-fast {args.command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # the machine failed it (a full disk, a read-only folder): 1
        print(f"cct-fast {args.command}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
