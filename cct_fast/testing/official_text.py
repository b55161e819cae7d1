"""A PyTorch reference of the official text models as the main branch of
SHI-Labs/Compact-Transformers builds them (read at commit cd11f09), written step by step from
``src/text/{cct,cvt,vit,transformer}.py`` and ``src/utils/{embedder,tokenizer,transformers}.py``;
the official code is on no package index. Every size, default and key it relies on is written
down below with the file it came from, and the reference builds each name from these tables,
not from :mod:`cct_fast`'s: a test comparing the two compares two readings.

Module and parameter names are the official attribute names (``embedder.embeddings``,
``tokenizer.conv_layers.0``, ``classifier.blocks.N.self_attn.qkv`` ...), so its state dict has
the official keys and shapes. It carries the two fixes that make the official code run
(:mod:`cct_fast.core.text_config`): the positional table's row 0 is a padding row and the
tokens take rows 1..T, and the mask is (batch, tokens) boolean. Needs torch.
"""

from __future__ import annotations

import numpy as np

OFFICIAL_COMMIT = "cd11f09"

# name -> (num_layers, num_heads, mlp_ratio, embedding_dim), from each file's text_* builders.
OFFICIAL_TEXT_SIZES = {
    # src/text/cct.py: text_cct_2, text_cct_4, text_cct_6
    "text_cct_2": (2, 2, 1, 128),
    "text_cct_4": (4, 2, 1, 128),
    "text_cct_6": (6, 4, 2, 256),
    # src/text/cvt.py: its 6-layer model stays 128 wide
    "text_cvt_2": (2, 2, 1, 128),
    "text_cvt_4": (4, 2, 1, 128),
    "text_cvt_6": (6, 4, 2, 128),
    # src/text/vit.py: its 6-layer model is 256 wide
    "text_vit_2": (2, 2, 1, 128),
    "text_vit_4": (4, 2, 1, 128),
    "text_vit_6": (6, 4, 2, 256),
    # src/text/transformer.py passes no embedding_dim: the encoder is word_embedding_dim wide
    "text_transformer_2": (2, 2, 1, 300),
    "text_transformer_4": (4, 2, 1, 300),
    "text_transformer_6": (6, 4, 2, 300),
}

# family -> (its tokenizer, whether it pools the sequence; else a class token), from the classes
# TextCCT (max_pool=True, activation=nn.ReLU, seq_pool=True), TextCVT (max_pool=False,
# activation=None, kernel = stride = patch_size, padding 0, seq_pool=True), TextViTLite (as CVT,
# seq_pool=False) and TextTransformerLite (no tokenizer, seq_pool=False).
FAMILIES = {
    "cct": ("convolution", True),
    "cvt": ("patches", True),
    "vit": ("patches", False),
    "transformer": (None, False),
}

OFFICIAL_TEXT_DEFAULTS = {
    "seq_len": 64,  # every Text* class
    "word_embedding_dim": 300,  # src/utils/embedder.py, and every Text* class
    # src/utils/tokenizer.py: TextTokenizer's own embedding_dim, the convolution's (k, 300)
    # kernel width; the word_embedding_dim the Text* classes pass it lands in **kwargs.
    "tokenizer_words_width": 300,
    "vocab_size": 100_000,  # src/utils/embedder.py
    "padding_idx": 1,  # src/utils/embedder.py
    "kernel_size": 4,  # src/text/cct.py _text_cct; cvt.py and vit.py patch_size
    "pooling": (2, 2, 1),  # src/text/cct.py TextCCT: pooling kernel, stride, padding
    "num_classes": 1000,  # src/utils/transformers.py MaskedTransformerClassifier
    "positional_embedding": "sine",  # the same
}


def cct_stride_and_padding(kernel_size):
    """src/text/cct.py ``_text_cct``: stride ``max(1, k // 2 - 1)``, padding ``max(1, k // 2)``."""
    return max(1, kernel_size // 2 - 1), max(1, kernel_size // 2)


def official_text_model(name, seed=0, **overrides):
    """The reference model for the official ``name`` (``text_cct_2`` ...), in eval mode.
    ``overrides`` replace :data:`OFFICIAL_TEXT_DEFAULTS` entries (``vocab_size``,
    ``num_classes``, ``kernel_size``, ``seq_len``, ``positional_embedding``)."""
    import torch

    unknown = set(overrides) - set(OFFICIAL_TEXT_DEFAULTS)
    if unknown:
        raise TypeError(f"official_text_model takes no {sorted(unknown)}")
    settings = {**OFFICIAL_TEXT_DEFAULTS, **overrides}
    layers, heads, mlp_ratio, width = OFFICIAL_TEXT_SIZES[name]
    tokenizer_kind, seq_pool = FAMILIES[name.split("_")[1]]
    torch.manual_seed(seed)
    embedder_class, tokenizer_class, classifier_class = _modules()

    class TextModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embedder = embedder_class(
                settings["vocab_size"], settings["word_embedding_dim"], settings["padding_idx"]
            )
            self.tokenizer = (
                None if tokenizer_kind is None else tokenizer_class(tokenizer_kind, width, settings)
            )
            tokens = settings["seq_len"] if self.tokenizer is None else self.tokenizer.seq_len()
            self.classifier = classifier_class(
                width, layers, heads, int(width * mlp_ratio), tokens, seq_pool, settings
            )

        def forward(self, ids, mask):
            mask = mask.bool()
            x = self.embedder(ids, mask)
            if self.tokenizer is not None:
                x, mask = self.tokenizer(x, mask)
            return self.classifier(x, mask)

    return TextModel().eval()


def _modules():
    """The classes, defined once torch is imported."""
    import torch
    from torch import nn

    class Embedder(nn.Module):
        """src/utils/embedder.py: the word table, and the vectors of padded words zeroed."""

        def __init__(self, vocab_size, dim, padding_idx):
            super().__init__()
            self.embeddings = nn.Embedding(vocab_size, dim, padding_idx=padding_idx)

        def forward(self, ids, mask):
            return self.embeddings(ids) * mask.unsqueeze(-1).float()

    class Tokenizer(nn.Module):
        """src/utils/tokenizer.py TextTokenizer: a Conv2d of one input channel whose kernel
        spans ``k`` words and the whole vector, then ReLU and a (pool, 1) max-pool for CCT; the
        mask follows by a ones-kernel conv1d and max-pool, > 0."""

        def __init__(self, kind, width, settings):
            super().__init__()
            k = settings["kernel_size"]
            stride, padding = cct_stride_and_padding(k) if kind == "convolution" else (k, 0)
            self.words = settings["tokenizer_words_width"]
            conv = nn.Conv2d(
                1, width, (k, self.words), stride=(stride, 1), padding=(padding, 0), bias=False
            )
            self.max_pool = kind == "convolution"
            if self.max_pool:
                pool_k, pool_s, pool_p = settings["pooling"]
                pool = nn.MaxPool2d((pool_k, 1), (pool_s, 1), (pool_p, 0))
                self.conv_layers = nn.Sequential(conv, nn.ReLU(), pool)
            else:
                self.conv_layers = nn.Sequential(conv, nn.Identity(), nn.Identity())
            self.seq_length = settings["seq_len"]

        def seq_len(self):
            """Tokens out of ``seq_len`` words, as the official ``seq_len()``: a forward pass."""
            with torch.no_grad():
                x, _ = self(
                    torch.zeros(1, self.seq_length, self.words),
                    torch.ones(1, self.seq_length, dtype=torch.bool),
                )
            return x.shape[1]

        def forward_mask(self, mask):
            conv = self.conv_layers[0]
            kernel = torch.ones((1, 1, conv.kernel_size[0]))
            covered = nn.functional.conv1d(
                mask.unsqueeze(1).float(), kernel, None, conv.stride[0], conv.padding[0]
            )
            if self.max_pool:
                pool = self.conv_layers[2]
                covered = nn.functional.max_pool1d(
                    covered, pool.kernel_size[0], pool.stride[0], pool.padding[0]
                )
            return covered.squeeze(1) > 0

        def forward(self, x, mask):
            x = self.conv_layers(x.unsqueeze(1)).transpose(1, 3).squeeze(1)
            mask = self.forward_mask(mask)
            return x * mask.unsqueeze(-1).float(), mask

    class MaskedAttention(nn.Module):
        """src/utils/transformers.py: qkv without bias; a pair with a padded token is filled
        with the dtype's lowest value before the softmax."""

        def __init__(self, dim, num_heads):
            super().__init__()
            self.num_heads = num_heads
            self.scale = (dim // num_heads) ** -0.5
            self.qkv = nn.Linear(dim, dim * 3, bias=False)
            self.proj = nn.Linear(dim, dim)

        def forward(self, x, mask):
            b, n, c = x.shape
            qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads)
            q, k, v = qkv.permute(2, 0, 3, 1, 4)
            attn = (q @ k.transpose(-2, -1)) * self.scale
            pairs = (mask[:, None, :] & mask[:, :, None]).unsqueeze(1)
            attn = attn.masked_fill(~pairs, -torch.finfo(attn.dtype).max).softmax(dim=-1)
            return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))

    class EncoderLayer(nn.Module):
        """src/utils/transformers.py MaskedTransformerEncoderLayer: norm1 after the residual."""

        def __init__(self, dim, heads, hidden):
            super().__init__()
            self.pre_norm = nn.LayerNorm(dim)
            self.self_attn = MaskedAttention(dim, heads)
            self.linear1 = nn.Linear(dim, hidden)
            self.norm1 = nn.LayerNorm(dim)
            self.linear2 = nn.Linear(hidden, dim)

        def forward(self, x, mask):
            x = self.norm1(x + self.self_attn(self.pre_norm(x), mask))
            return x + self.linear2(nn.functional.gelu(self.linear1(x)))

    class Classifier(nn.Module):
        """src/utils/transformers.py MaskedTransformerClassifier: a class token or sequence
        pooling (unmasked), a positional table with a leading padding row."""

        def __init__(self, dim, layers, heads, hidden, tokens, seq_pool, settings):
            super().__init__()
            self.seq_pool = seq_pool
            if seq_pool:
                self.attention_pool = nn.Linear(dim, 1)
            else:
                self.class_emb = nn.Parameter(torch.zeros(1, 1, dim))
                tokens += 1
            self.positional_emb = None
            if settings["positional_embedding"] == "learnable":
                self.positional_emb = nn.Parameter(torch.randn(1, tokens + 1, dim) * 0.2)
            elif settings["positional_embedding"] == "sine":
                self.positional_emb = nn.Parameter(_padded_sine(tokens, dim), requires_grad=False)
            self.blocks = nn.ModuleList(EncoderLayer(dim, heads, hidden) for _ in range(layers))
            self.norm = nn.LayerNorm(dim)
            self.fc = nn.Linear(dim, settings["num_classes"])

        def forward(self, x, mask):
            if not self.seq_pool:
                x = torch.cat([self.class_emb.expand(x.shape[0], -1, -1), x], dim=1)
                mask = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)
            if self.positional_emb is not None:
                x = x + self.positional_emb[:, 1:]
            for block in self.blocks:
                x = block(x, mask)
            x = self.norm(x)
            if self.seq_pool:
                weights = nn.functional.softmax(self.attention_pool(x), dim=1)
                x = torch.matmul(weights.transpose(-1, -2), x).squeeze(-2)
            else:
                x = x[:, 0]
            return self.fc(x)

    def _padded_sine(length, dim):
        """src/utils/transformers.py ``sinusoidal_embedding(..., padding_idx=True)``."""
        table = torch.FloatTensor(
            [[p / (10000 ** (2 * (i // 2) / dim)) for i in range(dim)] for p in range(length)]
        )
        table[:, 0::2] = torch.sin(table[:, 0::2])
        table[:, 1::2] = torch.cos(table[:, 1::2])
        return torch.cat([torch.zeros(1, dim), table]).unsqueeze(0)

    return Embedder, Tokenizer, Classifier


def as_conv1d_state_dict(state_dict):
    """``state_dict`` with its tokenizer in the ``Conv1d`` form, ``(out, 300, k)``, of the
    unmerged "change 2dConv to 1d" branch (January 2022): the same weights, transposed."""
    converted = dict(state_dict)
    key = "tokenizer.conv_layers.0.weight"
    if key in converted:
        weight = np.asarray(converted[key])
        converted[key] = np.ascontiguousarray(weight[:, 0].transpose(0, 2, 1))
    return converted


def official_text_logits(model, ids, mask):
    """The reference model's logits for numpy ids and mask."""
    import torch

    with torch.no_grad():
        return model(torch.from_numpy(np.asarray(ids)), torch.from_numpy(np.asarray(mask))).numpy()
