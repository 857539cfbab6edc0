"""KSVQE (Lu et al., CVPR 2024, "KVQ: Kwai Video Quality Assessment for Short-form Videos").

The published network of lixinustc/KVQ-Challenge-CVPR-NTIRE2024 (KSVQE_model.py), with the same
parameter names, so checkpoints trained with the reference load unchanged:

- `CLIP_tool` (models/clip_visual.py): frozen CLIP ViT-B/16 with trainable CLS adapters, run on 4
  key frames of `resize_video`; gives a 7x7 quality score map and patch tokens per key frame.
- `spa_patchnet` (models/region_selection.py): quality-aware region selection, cuts a 7x7
  mini-patch window (224 px) out of every frame of the 288 px `fragment`.
- Swin-T 3D with GRPB (models/swin3d_backbone.py, inherited: `patch_embed`, `layers`, `norm`).
- `distortion_tool` (models/contrique.py): frozen CONTRIQUE tokens of every 2nd selected frame,
  refined by `dist_adapter` (0.2 * adapter + 0.8 * tokens); supervised contrastive loss on them.
- After each Swin stage l >= tuning_stage (j = l - tuning_stage): content-adaptive modulation
  (semantic_adapter/semantic_cross/semantic_mod with CLIP patch tokens) and distortion-aware
  modulation (distortion_adapter/distortion_cross/distortion_self/distortion_mod with CONTRIQUE
  tokens), mixed as (a1[j] * distortion + a2[j] * semantic) / 2.

Differences from the reference code, all outside the network's maths: the pretrained CLIP and
CONTRIQUE weights are not overwritten by random initialisation after loading; the five unused
transformation modules are not built; weight paths are configurable; nothing is printed.
"""
from __future__ import annotations

import logging
import os
from typing import Mapping, Optional

import torch
from torch import nn

from kvq.core.checkpoint import CheckpointMismatchError
from models.registry import BACKBONES
from kvq.core.weights import resolve_weight
from models.clip_visual import ClipVisualAdapter
from models.contrique import ContriqueEncoder
from models.modulation import (CrossAttention, DistortionModulation, SemanticModulation, TemporalSelfAttention,
                               adapter_mlp)
from models.region_selection import RegionSelection
from models.swin3d_backbone import SwinTransformer3D, load_kinetics_weights

log = logging.getLogger(__name__)

CLIP_WIDTH = 768
CONTRIQUE_DIM = 128
NUM_KEY_FRAMES = 4
MODULATION_MODULES = ("semantic_adapter", "distortion_adapter", "semantic_mod", "distortion_mod",
                      "semantic_cross", "distortion_cross", "distortion_self")


def key_frames(t: int) -> tuple[list[int], torch.Tensor]:
    """Key frame indices (0, T/4-1, T/2-1, 3T/4-1) and the key frame (group) of every frame [T].

    group_id[j] = how many of the thresholds T/4-1, T/2-1, 3T/4-1 frame j has reached.
    """
    if t < 4 or t % 2:
        raise ValueError(f"KSVQE needs an even number of frames >= 4, got {t}")
    thresholds = (t // 4 - 1, t // 2 - 1, t * 3 // 4 - 1)
    group_id = torch.tensor([sum(j >= th for th in thresholds) for j in range(t)])
    return [0, *thresholds], group_id


@BACKBONES.register("KSVQE")
class KSVQE(SwinTransformer3D):
    """forward(batch) -> (features [B, 768, T/2, 7, 7], distortion tokens [B, T/2, 49, 128]).

    The distortion contrastive loss (`models.modulation.distortion_contrastive_loss` of the
    tokens and "dis_label") is computed by the trainer over the whole batch of all GPUs
    (`kvq.engine.losses.contrastive_loss`), not per replica inside forward.

    batch: "fragment" [B, 3, T, 288, 288] (ImageNet-normalised; the dataset's "technical" when
    absent), "resize_video" [B, 3, T, 112, 112] (CLIP-normalised).

    Config keys (reference names): num_samples, sample_type, CLIP_location, cls_use,
    tuning_stage, a1, a2, frozen_stages; defaults are those of Kwai_KSVQE.yml. `pretrained`
    loads the Kinetics-400 Swin-T, OpenAI CLIP ViT-B/16 and CONTRIQUE weights (paths
    `swin_path`, `clip_path`, `contrique_path` or the usual places, see kvq.core.weights); a missing
    file raises MissingWeightsError. `checkpoint` enables gradient checkpointing (training).
    """

    head_type = "VQAHead"
    head_defaults = {"in_channels": 768, "hidden_channels": 64}
    arg_ranges = {"num_samples": (1, None), "tuning_stage": (0, 4)}  # checked by constructor_args (kvq.core.config)
    weight_args = {"swin_tiny_k400": "swin_path", "clip_vit_b16": "clip_path", "contrique": "contrique_path"}
    legacy_args = {"qls_swin": "a key of the reference configs without effect",
                   "frozen3D": "a key of the reference configs without effect"}

    def __init__(self, num_samples: int = 1, sample_type: str = "topkpertubation", CLIP_location: int = 8,
                 cls_use: bool = True, tuning_stage: int = 1, a1: float = 1.0, a2: float = 2.0,
                 frozen_stages: int = -1, *, pretrained: bool = True, swin_path: Optional[str | os.PathLike] = None,
                 clip_path: Optional[str | os.PathLike] = None, contrique_path: Optional[str | os.PathLike] = None,
                 checkpoint: bool = True) -> None:
        swin_file = clip_file = contrique_file = None
        if pretrained:  # fail before building anything when a weight file is missing
            swin_file = resolve_weight("swin_tiny_k400", swin_path)
            clip_file = resolve_weight("clip_vit_b16", clip_path)
            contrique_file = resolve_weight("contrique", contrique_path)
        super().__init__(pretrained=False, frozen_stages=frozen_stages, checkpoint=checkpoint)
        num_stages = len(self.layers)
        if not 0 <= tuning_stage <= num_stages:
            raise ValueError(f"tuning_stage must lie in [0, {num_stages}], got {tuning_stage}")
        self.tuning_stage = tuning_stage
        self.spa_patchnet = RegionSelection(window=7, anchor_size=32, stride=1, num_samples=num_samples,
                                            sample_type=sample_type, sigma=0.5)

        self.CLIP_tool = ClipVisualAdapter(CLIP_location, cls_use, pretrained=pretrained, path=clip_file,
                                           checkpoint=checkpoint)
        self.distortion_tool = ContriqueEncoder(pretrained=pretrained, path=contrique_file)
        self.dist_adapter = adapter_mlp(CONTRIQUE_DIM, CONTRIQUE_DIM // 4, CONTRIQUE_DIM)

        embed_dim = self.patch_embed.proj.out_channels
        num_heads = [layer.blocks[0].attn.num_heads for layer in self.layers]
        self.semantic_adapter = nn.ModuleList()
        self.distortion_adapter = nn.ModuleList()
        self.semantic_mod = nn.ModuleList()
        self.distortion_mod = nn.ModuleList()
        self.semantic_cross = nn.ModuleList()
        self.distortion_cross = nn.ModuleList()
        self.distortion_self = nn.ModuleList()
        for stage in range(tuning_stage, num_stages):
            i = min(stage, num_stages - 2)  # the last stage keeps the width of stage 2's output
            dim, heads = embed_dim * 2 ** (i + 1), num_heads[i]
            self.semantic_adapter.append(adapter_mlp(CLIP_WIDTH, CLIP_WIDTH // 4, dim))
            self.distortion_adapter.append(adapter_mlp(CONTRIQUE_DIM, CONTRIQUE_DIM // 4, dim))
            self.semantic_mod.append(SemanticModulation(dim))
            self.distortion_mod.append(DistortionModulation(dim))
            self.semantic_cross.append(CrossAttention(dim, heads))
            self.distortion_cross.append(CrossAttention(dim, heads))
            self.distortion_self.append(TemporalSelfAttention(dim, heads))
        self.a1 = nn.Parameter(torch.full((num_stages - tuning_stage, 1), float(a1)))
        self.a2 = nn.Parameter(torch.full((num_stages - tuning_stage, 1), float(a2)))

        new_modules = [self.dist_adapter, *(getattr(self, name) for name in MODULATION_MODULES)]
        if cls_use:
            new_modules.append(self.CLIP_tool.adapter_layer)
        for module in new_modules:
            module.apply(self._init_weights)
        if pretrained:
            load_kinetics_weights(self, swin_file)

    @property
    def has_unused_parameters(self) -> bool:
        """tuning_stage = the number of stages: no modulation, a1 and a2 are empty and unused
        (every other tuning stage uses all trainable parameters)."""
        return self.tuning_stage == len(self.layers)

    def remap_reference_keys(self, state: Mapping[str, torch.Tensor]) -> tuple[dict, dict]:
        """Reference checkpoints already use these names: nothing is renamed or dropped.

        Raises CheckpointMismatchError naming both tuning stages when the checkpoint was trained
        with another `tuning_stage`, and explains which KSVQE parts a partial checkpoint (such as
        the LSVQ-pretrained KSVQE_techniqual_pretrainonLSVQ.pth) leaves at their initialisation.
        """
        if "a1" in state and state["a1"].shape != self.a1.shape:
            trained = len(self.layers) - state["a1"].shape[0]
            raise CheckpointMismatchError(
                f"KSVQE checkpoint was trained with tuning_stage={trained} but the config asks for "
                f"tuning_stage={self.tuning_stage} (a1 {tuple(state['a1'].shape)} vs {tuple(self.a1.shape)}); "
                "set model.args.KSVQE.backbone.tuning_stage to match the checkpoint")
        present = {key.split(".", 1)[0] for key in state}
        absent = sorted({key.split(".", 1)[0] for key in self.state_dict()} - present)
        if absent:
            note = (" (expected for the LSVQ-pretrained KSVQE_techniqual_pretrainonLSVQ.pth, which holds no "
                    "modulation modules: they are trained on KVQ)" if set(absent) <= set(MODULATION_MODULES) else "")
            log.warning("KSVQE checkpoint has no weights for %s: these parts keep their initialisation%s",
                        ", ".join(absent), note)
        return dict(state), {}

    def _modulate(self, j: int, x: torch.Tensor, patch_tokens: torch.Tensor, dist_tokens: torch.Tensor) -> torch.Tensor:
        """Content- and distortion-aware modulation after a Swin stage.

        x [n, c, t, h, w]; patch_tokens [n, t, L, 768] (CLIP, per Swin frame); dist_tokens
        [n, t, G, 128] (CONTRIQUE) -> [n, c, t, h, w].
        """
        n, c, t, h, w = x.shape
        tokens = x.permute(0, 2, 3, 4, 1).reshape(n * t, h * w, c)

        semantic = self.semantic_adapter[j](patch_tokens.reshape(n * t, -1, CLIP_WIDTH))
        enhanced = self.semantic_cross[j](tokens, semantic)  # [n*t, hw, c]
        fors = self.semantic_mod[j](enhanced.transpose(1, 2).reshape(n * t, c, h, w),
                                    tokens.transpose(1, 2).reshape(n * t, c, h, w))
        fors = fors.reshape(n, t, c, h, w).transpose(1, 2)

        distortion = self.distortion_adapter[j](dist_tokens.reshape(n * t, -1, CONTRIQUE_DIM))
        enhanced = self.distortion_cross[j](tokens, distortion)  # [n*t, hw, c]
        enhanced = enhanced.reshape(n, t, h * w, c).transpose(1, 2).reshape(n * h * w, t, c)
        enhanced = self.distortion_self[j](enhanced)  # attention over time
        enhanced = enhanced.reshape(n, h * w, t, c).permute(0, 3, 2, 1).reshape(n, c, t, h, w)
        ford = self.distortion_mod[j](enhanced, tokens.reshape(n, t * h * w, c))
        ford = ford.reshape(n, t, h, w, c).permute(0, 4, 1, 2, 3)

        return (self.a1[j] * ford + self.a2[j] * fors) / 2

    def forward(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        fragment = batch["fragment"] if "fragment" in batch else batch["technical"]
        video = batch["resize_video"]
        b, _, t = fragment.shape[:3]
        if video.shape[2] != t:
            raise ValueError(f"resize_video has {video.shape[2]} frames, fragment {t}")
        key_idx, group_id = key_frames(t)
        group_id = group_id.to(fragment.device)

        c, h, w = video.shape[1], video.shape[3], video.shape[4]
        keys = video[:, :, key_idx].transpose(1, 2).reshape(b * NUM_KEY_FRAMES, c, h, w)
        cls_attn, _, patch_tokens = self.CLIP_tool(keys)  # [b*4, L], [b*4, L, 768]
        cls_attn = cls_attn.view(b, NUM_KEY_FRAMES, -1)
        patch_tokens = patch_tokens.view(b, NUM_KEY_FRAMES, *patch_tokens.shape[1:])[:, group_id[::2]]

        selected = self.spa_patchnet(fragment, cls_attn, group_id)  # [b, 3, T, 224, 224]
        x = self.pos_drop(self.patch_embed(selected))

        dist_tokens = self.distortion_tool(selected.detach()[:, :, ::2])  # [b, T/2, 49, 128]
        dist_tokens = 0.2 * self.dist_adapter(dist_tokens) + 0.8 * dist_tokens

        for stage, layer in enumerate(self.layers):
            x = layer(x.contiguous())
            if stage >= self.tuning_stage:
                x = self._modulate(stage - self.tuning_stage, x, patch_tokens, dist_tokens)
        return self.apply_norm(x), dist_tokens
