"""What every Compact Transformer does after its tokens: the encoder layers, the final
LayerNorm, sequence pooling (or the class token's output) and the head; the image models
(:class:`~cct_fast.core.model.CCT`) and the text models (:class:`~cct_fast.core.text_model.TextCCT`)
differ only in how they make the tokens."""

from __future__ import annotations

import keras
import tensorflow as tf

from cct_fast.compute import dispatch
from cct_fast.compute.xla import warn_if_no_gpu
from cct_fast.core.costs import check_fits_in_memory
from cct_fast.core.layers import (
    ClassifierHead,
    ClassToken,
    SequencePooling,
    TorchTruncatedNormal,
    TransformerEncoderLayer,
)
from cct_fast.core.layers.encoder import layer_norm
from cct_fast.core.layers.replica_dropout import Dropout

# cct_fast.weights.loading.load_weights, which sits above this layer: it hands itself in when
# it is imported (``import cct_fast`` imports it), and the models' load_weights runs it.
_checked_load = None


def use_checked_load(load):
    """Makes ``load(model, path, allow_new_head=...)`` what the models' ``load_weights`` runs."""
    global _checked_load
    _checked_load = load


class EncoderClassifier(keras.Model):
    """The shared part of the models: a subclass hands its configuration (an
    :class:`~cct_fast.core.config.EncoderConfig`) to ``__init__``, adds its tokenizer, the
    class token (:meth:`_add_class_token`) and its positions, then calls :meth:`_add_encoder`;
    in ``call`` it runs :meth:`_classify` on its tokens."""

    def __init__(self, config, *, name, **kwargs):
        super().__init__(name=name, **kwargs)
        check_fits_in_memory(config, name)
        self.config = config

    def _add_class_token(self):
        """ViT-Lite's class token, or None with sequence pooling."""
        self.class_token = None
        if not self.config.seq_pool:
            self.class_token = ClassToken(name="class_token", dtype=self.dtype_policy)

    def load_weights(self, filepath, skip_mismatch=False, **kwargs):
        """Keras' method, checked and all or nothing as :func:`cct_fast.load_weights` is: a
        file of another architecture (a deeper model's, which Keras itself would load into the
        first blocks) is refused with both described, the model keeps its weights on any
        failure, and PyTorch checkpoints are converted. A head of another shape is refused, as
        Keras refuses it; ``skip_mismatch=True`` leaves it freshly initialised, with a warning.
        Keras' other arguments go to Keras' own load."""
        if kwargs:
            return super().load_weights(filepath, skip_mismatch=skip_mismatch, **kwargs)
        _checked_load(self, filepath, allow_new_head=skip_mismatch)

    def _add_encoder(self, include_top, classifier_activation, jit_compile, implementation):
        config = self.config
        self.implementation = dispatch.check_implementation(implementation)
        self.include_top = include_top
        self.classifier_activation = classifier_activation
        self._jit_compile_default = jit_compile
        self.jit_compile = jit_compile
        if jit_compile:
            warn_if_no_gpu()
        policy = self.dtype_policy
        self.embedding_dropout = Dropout(config.dropout, name="embedding_dropout", dtype=policy)
        self.blocks = [
            TransformerEncoderLayer(
                config.num_heads,
                config.feedforward_dim,
                dropout=config.dropout,
                attention_dropout=config.attention_dropout,
                drop_path_rate=rate,
                implementation=implementation,
                name=f"block_{i}",
                dtype=policy,
            )
            for i, rate in enumerate(config.drop_path_rates)
        ]
        self.norm = layer_norm("norm", policy)
        self.sequence_pool = None
        if config.seq_pool:
            self.sequence_pool = SequencePooling(
                implementation, dtype="float32", name="sequence_pool"
            )
        self.head = None
        if include_top:
            self.head = ClassifierHead(
                config.num_classes,
                kernel_initializer=TorchTruncatedNormal(0.02),
                dtype="float32",
                name="head",
            )

    def _build_encoder(self, token_shape):
        """Build what :meth:`_add_encoder` added, for tokens of ``token_shape``."""
        self.embedding_dropout.build(token_shape)
        for block in self.blocks:
            block.build(token_shape)
        self.norm.build(token_shape)
        if self.sequence_pool is not None:
            self.sequence_pool.build(token_shape)
        if self.head is not None:
            self.head.build((None, self.config.width))
        self.built = True

    def _classify(self, x, training=False, token_mask=None):
        """Tokens (positions added) -> logits, or the pooled features without a head."""
        x = self.embedding_dropout(x, training=training)
        for block in self.blocks:
            x = block(x, training=training, token_mask=token_mask)
        steps = dispatch.path(self.implementation, self.compute_dtype, training=bool(training))
        x = steps.layer_norm(self.norm, x)
        x = self.sequence_pool(x, training=training) if self.sequence_pool is not None else x[:, 0]
        if self.head is None:
            return x
        x = self.head(x)
        if self.classifier_activation is not None:
            x = keras.activations.get(self.classifier_activation)(x)
        return x

    def compile(self, *args, jit_compile=None, **kwargs):
        if jit_compile is None:
            jit_compile = self._jit_compile_default
        if jit_compile is True:
            warn_if_no_gpu()
        super().compile(*args, jit_compile=jit_compile, **kwargs)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Build from the dataset's element spec. Under a ``tf.distribute`` strategy, Keras
        pulls a first batch through a second iterator of the distributed dataset and reduces
        it over the replicas, only to learn its shapes. Under ``MultiWorkerMirroredStrategy``
        that reduce fails (keras-team/keras#20585), and the extra pull runs the input
        pipeline's random layers one batch further than a run on one device draws them."""
        # Keras' own test for a strategy: without one, it builds when the step is traced.
        if iterator is not None and data_batch is None and self._distribute_strategy is not None:
            spec = iterator.data_adapter.get_tf_dataset().element_spec
            return super()._maybe_symbolic_build(data_batch=spec)
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def train_step(self, data):
        """Keras' step. Across workers, Keras reduces each replica's logs by
        ``strategy.reduce("MEAN", value, axis=0)``, which a scalar cannot take
        (keras-team/keras#20585): there each log goes out as a vector of one, whose mean over
        axis 0 and the replicas is the scalar Keras reduces to elsewhere."""
        logs = super().train_step(data)
        if not _across_workers(self.distribute_strategy):
            return logs
        return tf.nest.map_structure(lambda value: tf.reshape(value, (1,)), logs)

    def get_config(self):
        return {
            **super().get_config(),
            **self.config.to_dict(),
            "include_top": self.include_top,
            "classifier_activation": self.classifier_activation,
            "jit_compile": self._jit_compile_default,
            "implementation": self.implementation,
        }


def _across_workers(strategy):
    """A ``MultiWorkerMirroredStrategy`` with more than one worker."""
    return (
        isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        and strategy.extended._in_multi_worker_mode()
    )
