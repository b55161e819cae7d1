"""How the hot path of a model is computed: one Keras op per step (:mod:`.reference`), fused
TensorFlow functions (:mod:`.fused`), or the optional custom ops (:mod:`.custom_ops`).
:mod:`.dispatch` is the one place that decides which of them runs."""

# What ``implementation=`` accepts; here, so that recipes check it without TensorFlow.
IMPLEMENTATIONS = ("fused", "reference", "custom", "auto")
