"""kvq.api.loading: the checkpoint that scores."""
import pytest

from kvq.api.loading import checkpoint_for_test


def test_scoring_never_falls_back_to_load_path() -> None:
    """load_path is what training starts from (for KSVQE a backbone-only LSVQ file): scoring takes
    --checkpoint or test_load_path only, and the error says so."""
    cfg = {"test_load_path": None, "load_path": "pretrained_weights/KSVQE_techniqual_pretrainonLSVQ.pth"}
    with pytest.raises(FileNotFoundError, match="pass --checkpoint or set test_load_path.*load_path"):
        checkpoint_for_test(cfg)
    assert checkpoint_for_test(cfg, "given.pth") == "given.pth"
    assert checkpoint_for_test({**cfg, "test_load_path": "t.pth"}) == "t.pth"
