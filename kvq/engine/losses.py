"""Training losses (the reference's formulas). Inputs: predictions and labels [B, 1]; KSVQE's
distortion contrastive loss over the global batch of all processes."""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
import torch.nn.functional as F

from kvq.core.distributed import DistInfo
from models.modulation import distortion_contrastive_loss


def plcc_loss(pred: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """((1 - rho)/2 + (1 - rho^2)/4) / 2 written as the reference writes it, on batch-standardised
    values (population std + 1e-8). Zero for batches of fewer than 2 videos."""
    if pred.numel() < 2:
        return pred.sum() * 0.0
    s_hat, m_hat = torch.std_mean(pred, unbiased=False)
    pred = (pred - m_hat) / (s_hat + 1e-8)
    s, m = torch.std_mean(label, unbiased=False)
    label = (label - m) / (s + 1e-8)
    loss0 = F.mse_loss(pred, label) / 4
    rho = torch.mean(pred * label)
    loss1 = F.mse_loss(rho * pred, label) / 4
    return ((loss0 + loss1) / 2).float()


def rank_loss(pred: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Pairwise hinge on wrongly ordered pairs: sum(relu((p_i-p_j)·sign(y_j-y_i))) / n(n-1) / (1+max)."""
    n = pred.shape[0]
    if n < 2:
        return pred.sum() * 0.0
    r = F.relu((pred - pred.t()) * torch.sign(label.t() - label))
    return (r.sum() / n / (n - 1) / (1 + r.max())).float()


def contrastive_loss(tokens: torch.Tensor, labels: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """KSVQE's distortion contrastive loss over the whole batch, whatever the number of GPUs.

    tokens [b, T, G, D] (`VQANetwork` output "distortion_tokens"; DataParallel gathers all
    replicas' tokens), labels [b] (dis_label). Under DDP the tokens and labels of every rank are
    gathered (gradients flow back to their rank) and this rank's tokens are the anchors; the value
    is scaled by world_size * b / B so that DDP's gradient average is the gradient of the
    one-process loss over the global batch of B videos (the ranks' values average to that loss).
    """
    tokens = tokens.float()
    if not info.enabled:
        return distortion_contrastive_loss(tokens, labels)
    labels = torch.as_tensor(labels, device=tokens.device).reshape(-1)
    sizes = [torch.zeros(1, dtype=torch.long, device=tokens.device) for _ in range(info.world_size)]
    dist.all_gather(sizes, torch.tensor([len(tokens)], device=tokens.device))
    counts = [int(n) for n in sizes]
    pad = max(counts) - len(tokens)  # all_gather needs one shape: pad, then cut each rank's part
    padded = F.pad(tokens, (0, 0, 0, 0, 0, 0, 0, pad))
    padded_labels = F.pad(labels, (0, pad))
    all_labels = [torch.empty_like(padded_labels) for _ in range(info.world_size)]
    dist.all_gather(all_labels, padded_labels)
    gathered = dist_nn.all_gather(padded)
    tokens_all = torch.cat([t[:n] for t, n in zip(gathered, counts)])
    labels_all = torch.cat([t[:n] for t, n in zip(all_labels, counts)])
    start = sum(counts[:info.rank])
    loss = distortion_contrastive_loss(tokens_all, labels_all, anchors=range(start, start + len(tokens)))
    return loss * (info.world_size * len(tokens) / sum(counts))
