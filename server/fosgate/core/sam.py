"""Segment Anything proposals: the ``segment-anything`` automatic mask generator, filtered and merged.

The checkpoint is a file on the server given in its configuration (``--sam-checkpoint``,
``--sam-model vit_b|vit_l|vit_h``); nothing is ever downloaded. ``vit_tiny`` is a small architecture
of the same classes used by the tests with a randomly initialised checkpoint, so that the real code
path (image encoder, prompt grid, mask decoder, filters, merge) runs on a CPU in seconds.

Invariants
- ``filter_masks`` keeps a mask only if ``min_area <= area <= max_area``, ``predicted_iou >=
  pred_iou_thresh`` and ``stability_score >= stability_score_thresh``.
- ``merge_masks`` paints kept masks best-first (highest predicted IoU, then smaller area) into one
  uint32 instance image, never overwriting a pixel already claimed; pieces left smaller than
  ``min_area`` after that are dropped. Labels are 1..N.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fosgate.errors import InvalidInput, Precondition, invalid_input_on_error

MODEL_TYPES = ("vit_b", "vit_l", "vit_h", "vit_tiny")


@dataclass(frozen=True)
class SamFilter:
    min_area: int = 20
    max_area: int = 5000
    pred_iou_thresh: float = 0.8
    stability_score_thresh: float = 0.85


def filter_masks(masks: list[dict], f: SamFilter) -> list[dict]:
    return [m for m in masks
            if f.min_area <= int(m["area"]) <= f.max_area
            and float(m["predicted_iou"]) >= f.pred_iou_thresh
            and float(m["stability_score"]) >= f.stability_score_thresh]


def merge_masks(masks: list[dict], shape: tuple[int, int], min_area: int = 1) -> np.ndarray:
    out = np.zeros(shape, np.uint32)
    order = sorted(masks, key=lambda m: (-float(m["predicted_iou"]), int(m["area"])))
    n = 0
    for m in order:
        seg = np.asarray(m["segmentation"], bool) & (out == 0)
        if seg.sum() < max(min_area, 1):
            continue
        n += 1
        out[seg] = n
    return out


def _build(model_type: str):
    from functools import partial

    import torch
    from segment_anything import sam_model_registry
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    if model_type != "vit_tiny":
        return sam_model_registry[model_type](checkpoint=None)
    dim, size, patch = 32, 256, 16
    return Sam(
        image_encoder=ImageEncoderViT(depth=1, embed_dim=dim, img_size=size, mlp_ratio=2,
                                      norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=2,
                                      patch_size=patch, qkv_bias=True, use_rel_pos=True, global_attn_indexes=(0,),
                                      window_size=4, out_chans=dim),
        prompt_encoder=PromptEncoder(embed_dim=dim, image_embedding_size=(size // patch, size // patch),
                                     input_image_size=(size, size), mask_in_chans=4),
        mask_decoder=MaskDecoder(num_multimask_outputs=3,
                                 transformer=TwoWayTransformer(depth=1, embedding_dim=dim, mlp_dim=64, num_heads=2),
                                 transformer_dim=dim, iou_head_depth=2, iou_head_hidden_dim=32),
        pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375],
    )


def load_sam(checkpoint: str | Path | None, model_type: str = "vit_b"):
    """A SAM model on the CPU (or CUDA when available) from a local checkpoint file."""
    if not checkpoint:
        raise Precondition("Segment Anything is not configured on this server: start it with "
                           "--sam-checkpoint /path/to/sam_vit_b_01ec64.pth (the file is never downloaded).")
    path = Path(checkpoint)
    if model_type not in MODEL_TYPES:
        raise InvalidInput(f"Unknown SAM model type '{model_type}'; use vit_b, vit_l or vit_h.")
    if not path.is_file():
        raise Precondition(f"The Segment Anything checkpoint '{path}' does not exist on the server.")
    try:
        import torch
    except ImportError:
        raise Precondition("Segment Anything needs the 'sam' extra: pip install 'fosgate[sam]'.") from None
    sam = _build(model_type)
    with invalid_input_on_error(lambda why: f"The Segment Anything checkpoint '{path.name}' is damaged or is not a "
                                            f"{model_type} checkpoint ({why})."):
        state = torch.load(path, map_location="cpu", weights_only=True)
        sam.load_state_dict(state)
    sam.eval()
    if torch.cuda.is_available():
        sam.to("cuda")
    return sam


def save_tiny_random_sam(path: str | Path, seed: int = 0) -> Path:
    """Write a randomly initialised ``vit_tiny`` checkpoint (for tests and offline smoke runs)."""
    import torch

    torch.manual_seed(seed)
    sam = _build("vit_tiny")
    torch.save(sam.state_dict(), path)
    return Path(path)


class SamProposer:
    """Automatic mask generation on tiles; the model is loaded once per job, never globally."""

    def __init__(self, sam, f: SamFilter, points_per_side: int = 16):
        from segment_anything import SamAutomaticMaskGenerator

        self.filter = f
        # the generator's own thresholds are opened fully: fosgate applies its documented filters
        self.generator = SamAutomaticMaskGenerator(sam, points_per_side=points_per_side, pred_iou_thresh=0.0,
                                                   stability_score_thresh=0.0, min_mask_region_area=0,
                                                   output_mode="binary_mask")

    def __call__(self, rgb8: np.ndarray) -> tuple[np.ndarray, int, int]:
        """(labels, masks generated, masks kept) for one uint8 (h, w, 3) tile."""
        import torch

        with torch.inference_mode():
            masks = self.generator.generate(rgb8)
        kept = filter_masks(masks, self.filter)
        return merge_masks(kept, rgb8.shape[:2], self.filter.min_area), len(masks), len(kept)


def to_rgb8(raw: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """A tile as SAM expects it: uint8 RGB, contrast-stretched with the slide's statistics."""
    from fosgate.core.normalize import Normalization

    x = (Normalization.apply(raw, lo, hi, 1.0) * 255).astype(np.uint8)
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    return np.ascontiguousarray(x[..., :3])


if __name__ == "__main__":  # python -m fosgate.core.sam tiny PATH: write a random vit_tiny checkpoint
    import sys

    if len(sys.argv) != 3 or sys.argv[1] != "tiny":
        raise SystemExit("usage: python -m fosgate.core.sam tiny PATH")
    print(save_tiny_random_sam(sys.argv[2]))
