"""A Vision Transformer written from scratch (lucidrains/vit-pytorch style, no timm/transformers).

Why from scratch: the benchmark contrasts a ViT that learns everything from a few thousand faces
with pretrained ones, and the explainer needs attention maps. The attention softmax is the named
submodule `Attention.attend`, so a forward hook on it reads (N, heads, T, T) probabilities without
a second copy of the model; `ViT.attention_modules()` lists them in depth order.

Sizing (the defaults of `ViTConfig`): faces of 96-224 px carry their expression in a few small
regions (brows, eyes, mouth), so tokens must be small: patch 8 at the quick profile's 112 px and
patch 16 at 224 px both give a 14x14 grid (196 tokens), like ViT-B/16 at 224. Width 192, depth 6
and 3 heads of 64 (ViT-Tiny's width at half its depth, MLP ratio 2: ~1.9 M parameters) keep it trainable from
scratch on small data and on 2 CPU cores; dropout 0.1 because small data overfits quickly.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ViTConfig:
    image_size: int = 112      # training input side; other sides interpolate the position grid
    patch_size: int = 8        # 112 / 8 = 14 x 14 tokens
    num_classes: int = 3
    dim: int = 192             # token width (ViT-Tiny)
    depth: int = 6             # encoder blocks
    heads: int = 3             # 64 dims per head
    mlp_ratio: float = 2.0     # hidden width of the MLP = mlp_ratio * dim
    dropout: float = 0.1       # attention, MLP and embedding dropout
    channels: int = 3

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of "
                             f"patch_size {self.patch_size}")
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} is not divisible by heads {self.heads}")

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size


class Attention(nn.Module):
    """Multi-head self-attention; `attend` (a named Softmax) is where attention maps are hooked."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.attend = nn.Softmax(dim=-1)
        self.attn_drop = nn.Dropout(dropout)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn = self.attend((q @ k.transpose(-2, -1)) * self.scale)   # (N, heads, T, T)
        out = (self.attn_drop(attn) @ v).transpose(1, 2).reshape(n, t, d)
        return self.proj_drop(self.proj(out))


class Block(nn.Module):
    """Pre-norm encoder block: x + Attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """Patch embedding (a strided conv), CLS token, learned positions, encoder, LayerNorm, head."""

    def __init__(self, config: ViTConfig | None = None, **overrides: object) -> None:
        super().__init__()
        cfg = config or ViTConfig()
        if overrides:
            cfg = ViTConfig(**{**asdict(cfg), **overrides})
        self.config = cfg
        self.patch_embed = nn.Conv2d(cfg.channels, cfg.dim, cfg.patch_size, stride=cfg.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + cfg.grid ** 2, cfg.dim))
        self.pos_drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg.dim, cfg.heads, cfg.mlp_ratio, cfg.dropout)
                                    for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim)
        self.head = nn.Linear(cfg.dim, cfg.num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        w = self.patch_embed.weight  # like a Linear over the flattened patch (as in ViT/MAE)
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.patch_embed.bias)

    def position_embedding(self, grid_h: int, grid_w: int) -> torch.Tensor:
        """Learned positions, bicubically resized when the input's token grid differs."""
        cls_pos, patch_pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        g = self.config.grid
        if (grid_h, grid_w) == (g, g):
            return self.pos_embed
        patch_pos = patch_pos.reshape(1, g, g, -1).permute(0, 3, 1, 2)
        patch_pos = F.interpolate(patch_pos, size=(grid_h, grid_w), mode="bicubic",
                                  align_corners=False)
        return torch.cat([cls_pos, patch_pos.flatten(2).transpose(1, 2)], dim=1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Token sequence after the final norm: (N, 1 + grid_h * grid_w, dim), CLS first."""
        if x.ndim != 4 or x.shape[1] != self.config.channels:
            raise ValueError(f"expected (N, {self.config.channels}, H, W) images, got {tuple(x.shape)}")
        p = self.config.patch_size
        if x.shape[-2] % p or x.shape[-1] % p:
            raise ValueError(f"image size {tuple(x.shape[-2:])} is not a multiple of patch {p}")
        x = self.patch_embed(x)                          # (N, dim, gh, gw)
        gh, gw = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)                 # (N, gh*gw, dim)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.pos_drop(x + self.position_embedding(gh, gw))
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x)[:, 0])

    def attention_modules(self) -> list[nn.Softmax]:
        """The softmax of every block, in depth order: hook these to read attention maps."""
        return [b.attn.attend for b in self.blocks]

    def reset_head(self, num_classes: int) -> None:
        self.head = nn.Linear(self.config.dim, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)


def tokens_to_grid(tokens: torch.Tensor, prefix_tokens: int = 1) -> torch.Tensor:
    """Drop CLS (and register) tokens and fold the rest into (N, C, gh, gw) for Grad-CAM.

    The grid is assumed square (the registry always feeds square images).
    """
    patches = tokens[:, prefix_tokens:]
    side = math.isqrt(patches.shape[1])
    if side * side != patches.shape[1]:
        raise ValueError(f"{patches.shape[1]} patch tokens do not form a square grid")
    return patches.reshape(tokens.shape[0], side, side, -1).permute(0, 3, 1, 2)
