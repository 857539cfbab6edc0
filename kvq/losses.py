"""Training losses (the seed's formulas). Inputs: predictions and labels [B, 1]."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def plcc_loss(pred: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """((1 - rho)/2 + (1 - rho^2)/4) / 2 written as the seed writes it, on batch-standardised
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
