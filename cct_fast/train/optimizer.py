"""A run's optimizer: AdamW with the official schedules (cosine with warm-up, or timm's
step decay) and, with ``ema_decay``, the weights' moving average."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="cct_fast")
class StepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """timm's step scheduler, per epoch: linear warm-up from ``warmup_lr`` over
    ``warmup_epochs``, then ``peak * decay_rate ** (epoch // decay_epochs)``."""

    def __init__(self, peak, warmup_lr, warmup_epochs, steps_per_epoch, decay_epochs, decay_rate):
        self.peak, self.warmup_lr, self.warmup_epochs = peak, warmup_lr, warmup_epochs
        self.steps_per_epoch = steps_per_epoch
        self.decay_epochs, self.decay_rate = decay_epochs, decay_rate

    def __call__(self, step):
        epoch = keras.ops.floor(keras.ops.cast(step, "float32") / self.steps_per_epoch)
        decayed = self.peak * self.decay_rate ** keras.ops.floor(epoch / self.decay_epochs)
        if not self.warmup_epochs:
            return decayed
        warming = self.warmup_lr + epoch * (self.peak - self.warmup_lr) / self.warmup_epochs
        return keras.ops.where(epoch < self.warmup_epochs, warming, decayed)

    def get_config(self):
        return dict(
            peak=self.peak,
            warmup_lr=self.warmup_lr,
            warmup_epochs=self.warmup_epochs,
            steps_per_epoch=self.steps_per_epoch,
            decay_epochs=self.decay_epochs,
            decay_rate=self.decay_rate,
        )


class AveragingAdamW(keras.optimizers.AdamW):
    """AdamW with ``use_ema`` whose ``fit`` leaves the trained weights in the model. Keras
    puts the moving averages into the model at the end of every ``fit``, and a run calls
    ``fit`` once per epoch, so training would go on from the averages; a run swaps them in
    only to evaluate and save (``Run._averaged_weights``)."""

    def finalize_variable_values(self, var_list):
        pass

    def swap_in_averages(self, var_list):
        """The moving averages into ``var_list`` (the variables the optimizer was built on)."""
        super().finalize_variable_values(var_list)


def build_optimizer(model, recipe, steps_per_epoch):
    """AdamW with linear warm-up from ``warmup_lr`` and cosine decay to ``min_lr`` over
    ``epochs``, per step, then ``min_lr`` through the ``cooldown_epochs`` (or timm's step
    schedule, :class:`StepDecay`), keeping the weights' moving average with ``ema_decay``;
    no weight decay on vectors (norms, biases) and token embeddings, as timm's
    ``filter_bias_and_bn`` and the official ``no_weight_decay``."""

    peak = recipe.learning_rate
    warmup = recipe.warmup_epochs * steps_per_epoch
    total = recipe.epochs * steps_per_epoch
    if recipe.schedule == "step":
        schedule = StepDecay(
            peak,
            recipe.warmup_lr,
            recipe.warmup_epochs,
            steps_per_epoch,
            recipe.decay_epochs,
            recipe.decay_rate,
        )
    else:
        schedule = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=recipe.warmup_lr if warmup else peak,
            decay_steps=max(1, total - warmup),
            alpha=recipe.min_lr / peak,
            warmup_target=peak if warmup else None,
            warmup_steps=warmup,
        )
    if recipe.ema_decay:
        optimizer = AveragingAdamW(
            learning_rate=schedule,
            weight_decay=recipe.weight_decay,
            use_ema=True,
            ema_momentum=recipe.ema_decay,
        )
    else:
        optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=recipe.weight_decay)
    optimizer.exclude_from_weight_decay(
        var_list=[
            v
            for v in model.trainable_variables
            if len(v.shape) <= 1 or "positional_embedding" in v.path or "class_token" in v.path
        ]
    )
    return optimizer
