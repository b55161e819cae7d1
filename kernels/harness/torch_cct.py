"""CCT-7/3x1 in PyTorch, two ways, for the GPU training-step comparison of check_cuda.py:
PyTorch's own operators (``scaled_dot_product_attention``, ``layer_norm``), to run under
``torch.compile``, or cct_fast's CUDA kernels as autograd functions with cuBLAS for the linear
layers (:func:`cuda_library.autograd_functions`). The architecture is the paper's CCT-7/3x1
for 32 x 32 images: one 3 x 3 convolution and a 3 x 3 max-pool of stride 2 (256 tokens of 256),
a learned position embedding, 7 pre-norm blocks of 4 heads whose block ends with
norm1(x + attention), an MLP of ratio 2 with GELU, a final LayerNorm, sequence pooling and the
classifier. Attention dropout 0.1 and no stochastic depth in both, so both compute the same
step."""

import torch
from cuda_library import autograd_functions
from torch import nn
from torch.nn import functional

WIDTH, HEADS, LAYERS, MLP_RATIO, TOKENS = 256, 4, 7, 2, 256
ATTENTION_DROPOUT, EPSILON = 0.1, 1e-5


class Block(nn.Module):
    def __init__(self, ops):
        super().__init__()
        self.ops = ops
        self.pre_norm, self.norm1 = nn.LayerNorm(WIDTH), nn.LayerNorm(WIDTH)
        self.qkv = nn.Linear(WIDTH, 3 * WIDTH, bias=False)
        self.proj = nn.Linear(WIDTH, WIDTH)
        self.linear1 = nn.Linear(WIDTH, MLP_RATIO * WIDTH)
        self.linear2 = nn.Linear(MLP_RATIO * WIDTH, WIDTH)

    def forward(self, x):
        h = self.ops.layer_norm(x, None, self.pre_norm)
        attended = self.ops.attention(self.qkv(h), self.training)
        x = self.ops.layer_norm(x, self.proj(attended).to(x.dtype), self.norm1)
        return x + self.linear2(functional.gelu(self.linear1(x))).to(x.dtype)


class CCT(nn.Module):
    def __init__(self, ops, num_classes=10):
        super().__init__()
        self.ops = ops
        self.conv = nn.Conv2d(3, WIDTH, 3, padding=1, bias=False)
        self.position = nn.Parameter(torch.randn(1, TOKENS, WIDTH) * 0.02)
        self.blocks = nn.ModuleList(Block(ops) for _ in range(LAYERS))
        self.norm = nn.LayerNorm(WIDTH)
        self.pool = nn.Linear(WIDTH, 1)
        self.fc = nn.Linear(WIDTH, num_classes)

    def forward(self, images):
        x = functional.max_pool2d(functional.relu(self.conv(images)), 3, 2, 1)
        x = x.flatten(2).transpose(1, 2)
        x = (x + self.position.to(x.dtype)).to(self.ops.stream_dtype or x.dtype)
        for block in self.blocks:
            x = block(x)
        x = self.ops.layer_norm(x, None, self.norm)
        return self.fc(self.ops.sequence_pool(x, self.pool))


class TorchOps:
    """PyTorch's own operators, as a torch.compile user's model has them."""

    stream_dtype = None

    @staticmethod
    def layer_norm(x, residual, norm):
        summed = x if residual is None else x + residual
        return functional.layer_norm(summed, (WIDTH,), norm.weight, norm.bias, EPSILON)

    @staticmethod
    def attention(qkv, training):
        batch, tokens, _ = qkv.shape
        q, k, v = qkv.view(batch, tokens, 3, HEADS, -1).permute(2, 0, 3, 1, 4)
        dropout = ATTENTION_DROPOUT if training else 0.0
        out = functional.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
        return out.transpose(1, 2).reshape(batch, tokens, WIDTH)

    @staticmethod
    def sequence_pool(x, pool):
        weights = pool(x).softmax(1)
        return (weights.transpose(1, 2) @ x).squeeze(1)


class KernelOps:
    """cct_fast's CUDA kernels; the residual stream stays in the autocast dtype, as the
    TensorFlow model's does under a mixed policy."""

    def __init__(self, kernels, stream_dtype=torch.bfloat16):
        self._attention, self._layer_norm, self._pool = autograd_functions(kernels)
        self.stream_dtype = stream_dtype

    def layer_norm(self, x, residual, norm):
        return self._layer_norm.apply(x, residual, norm.weight, norm.bias, EPSILON)

    def attention(self, qkv, training):
        rate = ATTENTION_DROPOUT if training else 0.0
        seed = tuple(int(s) for s in torch.randint(0, 2**31 - 1, (2,)))
        scale = (WIDTH // HEADS) ** -0.5
        return self._attention.apply(qkv.to(self.stream_dtype), HEADS, scale, rate, seed, None)

    def sequence_pool(self, x, pool):
        return self._pool.apply(x, pool.weight[0].float(), pool.bias[0].float())


def training_step(model, optimizer, images, labels):
    """One AdamW step under bf16 autocast."""
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = functional.cross_entropy(model(images), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss
