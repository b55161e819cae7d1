"""Per-channel mean and std of each dataset's training images, as the official configs
normalize with them. Apart from :mod:`.data` so that recipes read them without TensorFlow."""

CIFAR_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
}
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
FLOWERS_STATS = ((0.4353, 0.3773, 0.2872), (0.2966, 0.2455, 0.2698))
