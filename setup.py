from setuptools import find_packages, setup

setup(
    name="cct-fast",
    version="0.1.0",
    description="Compact Transformers (CCT, CVT, ViT-Lite) for Keras 3, identical to the official "
    "PyTorch models and fast on TensorFlow.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["cct_fast", "cct_fast.*"]),
    install_requires=[
        "tensorflow>=2.16",  # Keras 3
        "keras>=3.3",
        "numpy",
        "ml_dtypes",
        "scikit-learn",  # the embedded digits dataset
        "matplotlib",  # training curves
    ],
    extras_require={
        # Reading legacy (pre-1.6) checkpoints; the zip-format reader needs no torch.
        "torch": ["torch>=2.1"],
        "onnx": ["tf2onnx>=1.16", "onnxruntime>=1.18"],
        # onnxruntime-gpu 1.27+ needs CUDA 13; TensorFlow 2.21 is built against CUDA 12.
        "gpu": ["tf2onnx>=1.16", "onnxruntime-gpu>=1.18,<1.27"],
        # The reference PyTorch is pinned to the CPU wheel; vit-pytorch, which holds the
        # official architecture, is installed with --no-deps (see README).
        "dev": ["pytest>=7", "pytest-benchmark>=4", "torch==2.13.0", "einops>=0.6",
                "tf2onnx>=1.16", "onnxruntime>=1.18"],
    },
    entry_points={"console_scripts": ["cct-fast=cct_fast.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: MIT License",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
