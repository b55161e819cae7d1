"""A PyTorch reference of the official text models (``src/text/`` of
SHI-Labs/Compact-Transformers), written step by step from reading ``src/text/cct.py``,
``src/text/cvt.py``, ``src/text/transformer.py``, ``src/utils/tokenizer.py`` and
``src/utils/transformers.py``; the official code is on no package index. Module and parameter
names follow the official ones, so its state dict has the official keys and shapes.

It carries the two fixes that make the official code run (:mod:`cct_fast.core.text_config`):
the positional table's row 0 is a padding row and the tokens take rows 1..T, and the mask is
(batch, tokens) boolean. ``src/utils/embedder.py`` and ``src/text/vit.py`` were not available
to read: the embedder follows the issue's account of it (an ``nn.Embedding`` named
``embeddings``, padding id 1, vectors multiplied by the mask), and TextViT-Lite is TextCVT
with a class token. Needs torch.
"""

from __future__ import annotations

import numpy as np


def official_text_model(config, seed=0):
    """The reference model for a :class:`~cct_fast.core.text_config.TextConfig`, in eval
    mode."""
    import torch

    torch.manual_seed(seed)
    embedder_class, tokenizer_class, classifier_class = _modules()

    class TextModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embedder = embedder_class(
                config.vocab_size, config.word_embedding_dim, config.padding_idx
            )
            self.tokenizer = None if config.tokenizer == "none" else tokenizer_class(config)
            self.classifier = classifier_class(config)

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
        def __init__(self, vocab_size, dim, padding_idx):
            super().__init__()
            self.embeddings = nn.Embedding(vocab_size, dim, padding_idx=padding_idx)

        def forward(self, ids, mask):
            return self.embeddings(ids) * mask.unsqueeze(-1).float()

    class Tokenizer(nn.Module):
        """TextTokenizer1D (CCT: Conv1d) or TextTokenizer (CVT, ViT: a (k, dim) Conv2d)."""

        def __init__(self, config):
            super().__init__()
            self.one_d = config.tokenizer == "convolutional"
            k, s, p = config.kernel_size, config.conv_stride, config.conv_padding
            dim, width = config.word_embedding_dim, config.width
            if self.one_d:
                conv = nn.Conv1d(dim, width, k, stride=s, padding=p, bias=False)
                pool = nn.MaxPool1d(
                    config.pooling_kernel_size, config.pooling_stride, config.pooling_padding
                )
                self.conv_layers = nn.Sequential(conv, nn.ReLU(), pool)
            else:
                conv = nn.Conv2d(1, width, (k, dim), stride=(s, 1), padding=(p, 0), bias=False)
                self.conv_layers = nn.Sequential(conv, nn.Identity(), nn.Identity())
            self.max_pool = self.one_d

        def forward_mask(self, mask):
            conv = self.conv_layers[0]
            kernel = torch.ones((1, 1, conv.kernel_size[0]))
            covered = nn.functional.conv1d(
                mask.unsqueeze(1).float(), kernel, None, conv.stride[0], conv.padding[0]
            )
            if self.max_pool:
                pool = self.conv_layers[2]
                covered = nn.functional.max_pool1d(
                    covered, pool.kernel_size, pool.stride, pool.padding
                )
            return covered.squeeze(1) > 0

        def forward(self, x, mask):
            if self.one_d:
                x = self.conv_layers(x.transpose(1, 2)).transpose(1, 2)
            else:
                x = self.conv_layers(x.unsqueeze(1)).transpose(1, 3).squeeze(1)
            mask = self.forward_mask(mask)
            return x * mask.unsqueeze(-1).float(), mask

    class MaskedAttention(nn.Module):
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
        def __init__(self, config):
            super().__init__()
            dim, length = config.width, config.sequence_length
            self.seq_pool = config.seq_pool
            if config.seq_pool:
                self.attention_pool = nn.Linear(dim, 1)
            else:
                self.class_emb = nn.Parameter(torch.zeros(1, 1, dim))
                length += 1
            self.positional_emb = None
            if config.positional_embedding == "learnable":
                self.positional_emb = nn.Parameter(torch.randn(1, length + 1, dim) * 0.2)
            elif config.positional_embedding == "sine":
                self.positional_emb = nn.Parameter(_padded_sine(length, dim), requires_grad=False)
            self.blocks = nn.ModuleList(
                EncoderLayer(dim, config.num_heads, config.feedforward_dim)
                for _ in range(config.num_layers)
            )
            self.norm = nn.LayerNorm(dim)
            self.fc = nn.Linear(dim, config.num_classes)

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
        table = torch.FloatTensor(
            [[p / (10000 ** (2 * (i // 2) / dim)) for i in range(dim)] for p in range(length)]
        )
        table[:, 0::2] = torch.sin(table[:, 0::2])
        table[:, 1::2] = torch.cos(table[:, 1::2])
        return torch.cat([torch.zeros(1, dim), table]).unsqueeze(0)

    return Embedder, Tokenizer, Classifier


def official_text_logits(model, ids, mask):
    """The reference model's logits for numpy ids and mask."""
    import torch

    with torch.no_grad():
        return model(torch.from_numpy(np.asarray(ids)), torch.from_numpy(np.asarray(mask))).numpy()
