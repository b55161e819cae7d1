"""ONNX Runtime's CUDA path, checked and timed on a GPU machine that has no TensorFlow.

    python benchmarks/onnx_gpu.py export FOLDER    # here, with TensorFlow and tf2onnx
    python benchmarks/onnx_gpu.py run FOLDER       # there, with onnxruntime-gpu (and torch)

``export`` writes cct_7_3x1_32 as the fused ONNX graph in float32 and float16 (dynamic batch),
random images, the float32 Keras model's logits for them, and the model's config. ``run`` opens
the files on ``CUDAExecutionProvider`` (float32 with TF32 off, as ``load_onnx`` does by default,
and on), fails if ONNX Runtime fell back to the CPU, compares the logits with Keras' (relative
error), and times batches with the images and logits already on the GPU (I/O binding). Where
PyTorch and vit-pytorch are there, the official model of the same config is timed beside it:
eager in float32, and under ``torch.compile`` in float32 (TF32 off and on) and bfloat16
autocast. Exits 1 if a check fails.

The machine needs onnxruntime-gpu built for its CUDA; its wheel is far over what a lent
machine's transfer takes, so RESULTS.md says how the figures there were taken.
"""

import argparse
import importlib.util
import json
import sys
import time
import types
from pathlib import Path

import numpy as np

MODEL = "cct_7_3x1_32"
GRAPHS = ("float32", "float16")
# (row, graph, CUDA provider options, tolerance against Keras float32). ONNX Runtime's CUDA
# provider multiplies float32 in TF32 unless told not to.
SESSIONS = [
    ("float32", "float32", {"use_tf32": "0"}, 1e-4),
    ("float32 with TF32", "float32", {}, 1e-3),
    ("float16", "float16", {}, 1e-2),
]
BATCHES = (64, 256)


def export(folder):
    import cct_fast
    from cct_fast.export import to_onnx

    folder.mkdir(parents=True, exist_ok=True)
    model = cct_fast.create_model(MODEL)
    config = model.config
    images = np.random.default_rng(0).random((8, *config.image_size, 3), np.float32)
    np.savez(folder / "check.npz", images=images, logits=model.predict(images, verbose=0))
    derived = {key: getattr(config, key) for key in ("image_size", "conv_stride", "conv_padding")}
    (folder / "config.json").write_text(json.dumps({**config.to_dict(), **derived}))
    for dtype in GRAPHS:
        to_onnx(model, folder / f"{MODEL}_{dtype}.onnx", dtype=dtype, optimize=True)


def relative_error(actual, expected):
    return float(np.linalg.norm(actual - expected) / np.linalg.norm(expected))


def milliseconds(function, synchronize, repeats=50):
    for _ in range(5):
        function()
    synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    synchronize()
    return (time.perf_counter() - start) * 1e3 / repeats


def onnx_rows(folder, images_for, failures):
    import onnxruntime as ort

    if hasattr(ort, "preload_dlls"):
        ort.preload_dlls()
    print(f"onnxruntime {ort.__version__}, providers {ort.get_available_providers()}")
    check = np.load(folder / "check.npz")
    rows = {}
    for dtype, graph, options, tolerance in SESSIONS:
        session = ort.InferenceSession(
            str(folder / f"{MODEL}_{graph}.onnx"),
            providers=[("CUDAExecutionProvider", options), "CPUExecutionProvider"],
        )
        if session.get_providers()[0] != "CUDAExecutionProvider":
            failures.append(f"{dtype}: ONNX Runtime runs on {session.get_providers()}")
            continue
        error = relative_error(session.run(None, {"images": check["images"]})[0], check["logits"])
        print(f"ONNX Runtime CUDA {dtype}: relative error {error:.1e} against Keras float32")
        if error > tolerance:
            failures.append(f"{dtype}: relative error {error:.1e} > {tolerance:.0e}")
        for batch in BATCHES:
            binding = session.io_binding()
            binding.bind_ortvalue_input(
                "images", ort.OrtValue.ortvalue_from_numpy(images_for(batch), "cuda", 0)
            )
            binding.bind_output(session.get_outputs()[0].name, "cuda")
            rows[(f"ONNX Runtime CUDA, fused graph, {dtype}", batch)] = milliseconds(
                lambda s=session, b=binding: s.run_with_iobinding(b),
                binding.synchronize_outputs,
            )
    return rows


def official_torch_rows(folder, images_for):
    """The official model timed in PyTorch, or {} where torch or vit-pytorch is missing."""
    path = Path(__file__).resolve().parents[1] / "cct_fast" / "testing" / "official_torch.py"
    spec = importlib.util.spec_from_file_location("official_torch", path)
    official_torch = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(official_torch)  # a leaf module: no TensorFlow
    if official_torch.official_module() is None:
        print("PyTorch rows skipped: torch, einops or vit-pytorch is missing")
        return {}
    import torch

    config = json.loads((folder / "config.json").read_text())
    config["image_size"] = tuple(config["image_size"])
    model = official_torch.official_model(types.SimpleNamespace(**config)).cuda()
    variants = {
        "PyTorch eager, float32": (model, None),
        "PyTorch torch.compile, float32": (torch.compile(model), None),
        "PyTorch torch.compile, float32 with TF32": (torch.compile(model), "tf32"),
        "PyTorch torch.compile, bfloat16 autocast": (torch.compile(model), torch.bfloat16),
    }
    rows = {}
    for name, (function, dtype) in variants.items():
        torch.backends.cuda.matmul.allow_tf32 = dtype == "tf32"
        torch.backends.cudnn.allow_tf32 = dtype == "tf32"
        dtype = None if dtype == "tf32" else dtype
        for batch in BATCHES:
            images = torch.from_numpy(images_for(batch).transpose(0, 3, 1, 2).copy()).cuda()

            def run(f=function, x=images, dtype=dtype):
                with torch.inference_mode(), torch.autocast("cuda", dtype, enabled=bool(dtype)):
                    return f(x)

            rows[(name, batch)] = milliseconds(run, torch.cuda.synchronize)
    return rows


def table(rows):
    lines = [
        "| runtime | " + " | ".join(f"batch {b}: ms, images/s" for b in BATCHES) + " |",
        "| --- |" + " --- |" * len(BATCHES),
    ]
    for name in dict.fromkeys(name for name, _ in rows):
        cells = [
            f"{rows[name, b]:.3f}, {b / rows[name, b] * 1e3:,.0f}" if (name, b) in rows else "-"
            for b in BATCHES
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(folder):
    config = json.loads((folder / "config.json").read_text())
    shape = (*config["image_size"], config["n_input_channels"])

    def images_for(batch):
        return np.random.default_rng(batch).random((batch, *shape), np.float32)

    failures = []
    rows = onnx_rows(folder, images_for, failures)
    rows.update(official_torch_rows(folder, images_for))
    print(f"\n### {MODEL}, inference, images and logits on the GPU\n\n{table(rows)}")
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        sys.exit(1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["export", "run"])
    parser.add_argument("folder", type=Path)
    args = parser.parse_args()
    (export if args.step == "export" else run)(args.folder)


if __name__ == "__main__":
    main()
