"""One card per official model name, as timm keeps a ``default_cfgs`` entry beside each model:
what the official code builds under the name, the dataset its head and input statistics are
for, the checkpoint the official repository released for it and the official configs that
train it. Adding a name is one entry of :data:`CARDS`; ``create_model``, conversion,
``describe``, the pretrained download and the recipes all read it.

The architectures mirror SHI-Labs/Compact-Transformers: ``src/cct.py``, ``src/cvt.py`` and
``src/vit.py`` for images, a name being ``{family}_{layers}_{kernel}x{conv layers}_{image
size}`` (CCT) or ``{family}_{layers}_{patch}_{image size}`` (CVT, ViT-Lite), with ``_sine``
for the sine positional embedding and ``_c100``/``_fl`` for the CIFAR-100 / Flowers-102 heads;
``src/text/*.py`` for the ``text_`` names. The checkpoints are the official ``model_urls``
(``src/cct.py``), the configs the official ``configs/`` files
(:data:`cct_fast.train.official_configs.OFFICIAL_CONFIGS` holds their values).
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType

BASE_URL = "https://shi-labs.com/projects/cct/checkpoints"


@dataclasses.dataclass(frozen=True)
class DatasetFacts:
    """A dataset the official models and configs name: its class count, the per-channel mean
    and std of its training images that the official configs normalise with, and the names
    of its training and evaluation splits there."""

    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    splits: tuple[str, str]


DATASETS = MappingProxyType(
    {
        "cifar10": DatasetFacts(
            10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), ("train", "test")
        ),
        "cifar100": DatasetFacts(
            100, (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761), ("train", "test")
        ),
        "flowers102": DatasetFacts(
            102, (0.4353, 0.3773, 0.2872), (0.2966, 0.2455, 0.2698), ("train", "valid")
        ),
        "imagenet": DatasetFacts(
            1000, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), ("train", "validation")
        ),
    }
)


@dataclasses.dataclass(frozen=True)
class OfficialWeights:
    url: str
    trained_on: str
    sha256: str | None = None  # None: the official release publishes no hash

    @property
    def filename(self):
        return self.url.rsplit("/", 1)[-1]


@dataclasses.dataclass(frozen=True)
class ModelCard:
    """An official name: ``architecture`` holds the arguments of :class:`cct_fast.CCT` (or
    :class:`cct_fast.TextCCT`), ``dataset`` the :data:`DATASETS` entry the head is sized for
    (None for the text models, which the official code leaves to the data)."""

    name: str
    modality: str  # "image" or "text"
    architecture: MappingProxyType
    dataset: str | None = None
    weights: OfficialWeights | None = None
    configs: tuple[str, ...] = ()  # the official configs/ files that train this name

    @property
    def statistics(self) -> DatasetFacts | None:
        return None if self.dataset is None else DATASETS[self.dataset]


# Depth, heads, MLP ratio and width per size, as the official cct_N / cvt_N / vit_N helpers.
_SIZES = {
    2: dict(num_layers=2, num_heads=2, mlp_ratio=1, embedding_dim=128),
    4: dict(num_layers=4, num_heads=2, mlp_ratio=1, embedding_dim=128),
    6: dict(num_layers=6, num_heads=4, mlp_ratio=2, embedding_dim=256),
    7: dict(num_layers=7, num_heads=4, mlp_ratio=2, embedding_dim=256),
    14: dict(num_layers=14, num_heads=6, mlp_ratio=3, embedding_dim=384),
}
# The text models of the official src/text/: word width 300, sine positions, attention dropout
# 0.1, stochastic depth 0.1, no other dropout, as the official text builders set them.
# (num_layers, num_heads, mlp_ratio, width) from each family's file on the official main
# branch: src/text/cvt.py keeps its 6-layer model 128 wide, src/text/vit.py makes it 256 wide.
_TEXT_SIZES = {
    "cct": {2: (2, 2, 1, 128), 4: (4, 2, 1, 128), 6: (6, 4, 2, 256)},
    "cvt": {2: (2, 2, 1, 128), 4: (4, 2, 1, 128), 6: (6, 4, 2, 128)},
    "vit": {2: (2, 2, 1, 128), 4: (4, 2, 1, 128), 6: (6, 4, 2, 256)},
    "transformer": {2: (2, 2, 1, 300), 4: (4, 2, 1, 300), 6: (6, 4, 2, 300)},
}


def _weights(path, trained_on, sha256=None):
    return OfficialWeights(f"{BASE_URL}/{path}", trained_on, sha256)


def _image(name, architecture, dataset, weights=None, configs=()):
    architecture = dict(architecture, num_classes=DATASETS[dataset].num_classes)
    return ModelCard(name, "image", MappingProxyType(architecture), dataset, weights, configs)


def _cct(name, dataset="cifar10", weights=None, configs=()):
    """A CCT card, its architecture read from ``name``: ``cct_7_3x1_32_sine_c100``."""
    size, conv, img_size, *options = name.split("_")[1:]
    kernel, conv_layers = conv.split("x")
    architecture = dict(
        _SIZES[int(size)],
        tokenizer="convolutional",
        kernel_size=int(kernel),
        n_conv_layers=int(conv_layers),
        img_size=int(img_size),
        positional_embedding="sine" if "sine" in options else "learnable",
    )
    return _image(name, architecture, dataset, weights, configs)


def _patch(name):
    """A CVT or ViT-Lite card (4x4 patches, 32 px, CIFAR-10), read from ``name``."""
    family, size, patch, img_size, *options = name.split("_")
    architecture = dict(
        _SIZES[int(size)],
        tokenizer="patch",
        kernel_size=int(patch),
        img_size=int(img_size),
        positional_embedding="sine" if "sine" in options else "learnable",
        seq_pool=family == "cvt",
    )
    return _image(name, architecture, "cifar10")


def _text(family, size):
    layers, heads, mlp_ratio, width = _TEXT_SIZES[family][size]
    tokenizer = {"cct": "convolutional", "transformer": "none"}.get(family, "patch")
    architecture = dict(
        tokenizer=tokenizer,
        num_layers=layers,
        num_heads=heads,
        mlp_ratio=mlp_ratio,
        embedding_dim=width,
        kernel_size=4,
        seq_pool=family in ("cct", "cvt"),
    )
    return ModelCard(f"text_{family}_{size}", "text", MappingProxyType(architecture))


_CARDS = [
    _cct("cct_2_3x2_32"),
    _cct("cct_2_3x2_32_sine"),
    _cct("cct_4_3x2_32"),
    _cct("cct_4_3x2_32_sine"),
    _cct("cct_6_3x1_32"),
    _cct("cct_6_3x1_32_sine"),
    _cct("cct_6_3x2_32"),
    _cct("cct_6_3x2_32_sine"),
    _cct(
        "cct_7_3x1_32",
        weights=_weights("pretrained/cct_7_3x1_32_cifar10_300epochs.pth", "CIFAR-10, 300 epochs"),
        configs=("cct_7-3x1_cifar10_300epochs", "cct_7-3x1_cifar100_300epochs"),
    ),
    _cct(
        "cct_7_3x1_32_sine",
        weights=_weights(
            "pretrained/cct_7_3x1_32_sine_cifar10_5000epochs.pth", "CIFAR-10, 5000 epochs"
        ),
        configs=(
            "cct_7-3x1_cifar10_1500epochs",
            "cct_7-3x1_cifar10_5000epochs",
            "cct_7-3x1_cifar100_1500epochs",
            "cct_7-3x1_cifar100_5000epochs",
        ),
    ),
    _cct(
        "cct_7_3x1_32_c100",
        "cifar100",
        _weights("pretrained/cct_7_3x1_32_cifar100_300epochs.pth", "CIFAR-100, 300 epochs"),
    ),
    _cct(
        "cct_7_3x1_32_sine_c100",
        "cifar100",
        _weights("pretrained/cct_7_3x1_32_sine_cifar100_5000epochs.pth", "CIFAR-100, 5000 epochs"),
    ),
    _cct("cct_7_3x2_32"),
    _cct("cct_7_3x2_32_sine"),
    _cct("cct_7_7x2_224", "flowers102"),
    _cct(
        "cct_7_7x2_224_sine",
        "flowers102",
        _weights("pretrained/cct_7_7x2_224_flowers102.pth", "Flowers-102"),
        configs=("cct_7-7x2_flowers102",),
    ),
    _cct(
        "cct_14_7x2_224",
        "imagenet",
        _weights("pretrained/cct_14_7x2_224_imagenet.pth", "ImageNet-1k"),
        configs=("cct_14-7x2_imagenet", "cct_14-7x2_imagenet384"),
    ),
    _cct(
        "cct_14_7x2_384",
        "imagenet",
        _weights("finetuned/cct_14_7x2_384_imagenet.pth", "ImageNet-1k, fine-tuned at 384"),
        configs=("cct_14-7x2_flowers102",),
    ),
    _cct(
        "cct_14_7x2_384_fl",
        "flowers102",
        _weights("finetuned/cct_14_7x2_384_flowers102.pth", "Flowers-102, fine-tuned at 384"),
    ),
    *(
        _patch(f"{family}_{size}_4_32{suffix}")
        for family in ("cvt", "vit")
        for size in (2, 4, 6, 7)
        for suffix in ("", "_sine")
    ),
    *(_text(family, size) for family in ("cct", "cvt", "vit", "transformer") for size in (2, 4, 6)),
]
CARDS: MappingProxyType[str, ModelCard] = MappingProxyType({card.name: card for card in _CARDS})
