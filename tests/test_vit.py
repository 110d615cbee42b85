"""The from-scratch ViT: geometry checks, hookable attention, position-grid interpolation."""
from __future__ import annotations

import pytest
import torch

from emotion_core.models.vit import ViT, ViTConfig, tokens_to_grid


def tiny(**kw) -> ViT:
    torch.manual_seed(0)
    cfg = dict(image_size=32, patch_size=8, num_classes=3, dim=32, depth=2, heads=2)
    cfg.update(kw)
    return ViT(ViTConfig(**cfg)).eval()


def test_config_rejects_inconsistent_geometry() -> None:
    with pytest.raises(ValueError, match="multiple of patch_size"):
        ViTConfig(image_size=30, patch_size=8)
    with pytest.raises(ValueError, match="divisible by heads"):
        ViTConfig(dim=30, heads=4)


def test_forward_and_attention_hook_shapes() -> None:
    model = tiny()
    seen: list[torch.Tensor] = []
    mods = model.attention_modules()
    assert len(mods) == 2 and all(isinstance(m, torch.nn.Softmax) for m in mods)
    handle = mods[-1].register_forward_hook(lambda m, i, o: seen.append(o.detach()))
    logits = model(torch.randn(2, 3, 32, 32))
    handle.remove()
    assert logits.shape == (2, 3)
    (attn,) = seen
    assert attn.shape == (2, 2, 17, 17)  # 4x4 patches + CLS
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, 2, 17))


def test_named_softmax_is_on_the_forward_path() -> None:
    """Changing the hooked softmax output changes the logits: the hook sees the real attention."""
    model = tiny()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
        handle = model.attention_modules()[0].register_forward_hook(
            lambda m, i, o: torch.full_like(o, 1.0 / o.shape[-1]))
        after = model(x)
        handle.remove()
        again = model(x)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(before, again)


def test_position_embedding_interpolates_for_other_sizes() -> None:
    model = tiny()
    assert model.position_embedding(4, 4) is model.pos_embed
    assert model.position_embedding(6, 6).shape == (1, 37, 32)
    assert model(torch.randn(1, 3, 48, 48)).shape == (1, 3)


def test_bad_inputs_have_clear_errors() -> None:
    model = tiny()
    with pytest.raises(ValueError, match="expected"):
        model(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match="multiple of patch"):
        model(torch.randn(1, 3, 30, 30))


def test_tokens_to_grid_drops_prefix_and_keeps_raster_order() -> None:
    tokens = torch.randn(2, 1 + 12, 5)
    with pytest.raises(ValueError, match="square"):
        tokens_to_grid(tokens)
    tokens = torch.randn(2, 1 + 16, 5)
    grid = tokens_to_grid(tokens)
    assert grid.shape == (2, 5, 4, 4)
    torch.testing.assert_close(grid[:, :, 2, 3], tokens[:, 1 + 2 * 4 + 3])


def test_reset_head_changes_classes() -> None:
    model = tiny()
    model.reset_head(7)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 7)
