"""The building blocks of Compact Transformers, each a serializable Keras layer."""

from cct_fast.core.layers.attention import MultiHeadSelfAttention
from cct_fast.core.layers.drop_path import DropPath
from cct_fast.core.layers.embedding import (
    ClassToken,
    PositionalEmbedding,
    resize_positional_embedding,
)
from cct_fast.core.layers.encoder import TransformerEncoderLayer
from cct_fast.core.layers.initializers import SinusoidalTable, TorchTruncatedNormal
from cct_fast.core.layers.pooling import ClassifierHead, SequencePooling
from cct_fast.core.layers.replica_dropout import Dropout, ReplicaSeedGenerator
from cct_fast.core.layers.text import SequencePositions, TextTokenizer, WordEmbedding
from cct_fast.core.layers.tokenizer import ConvTokenizer

__all__ = [
    "ClassToken",
    "ClassifierHead",
    "ConvTokenizer",
    "DropPath",
    "Dropout",
    "MultiHeadSelfAttention",
    "PositionalEmbedding",
    "ReplicaSeedGenerator",
    "SequencePooling",
    "SequencePositions",
    "SinusoidalTable",
    "TorchTruncatedNormal",
    "TextTokenizer",
    "TransformerEncoderLayer",
    "WordEmbedding",
    "resize_positional_embedding",
]
