"""How the hot path of a model is computed: one Keras op per step (:mod:`.reference`), fused
TensorFlow functions (:mod:`.fused`), or the optional custom ops (:mod:`.custom_ops`).
:mod:`.dispatch` is the one place that decides which of them runs."""

# What ``implementation=`` accepts, and what a model, a layer and a recipe take when not told
# (:mod:`.dispatch`: the custom ops where measured faster, else the fused path); here, so that
# recipes and the command line check it without TensorFlow.
IMPLEMENTATIONS = ("fused", "reference", "custom", "auto")
DEFAULT_IMPLEMENTATION = "auto"
