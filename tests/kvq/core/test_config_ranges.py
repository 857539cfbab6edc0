"""Ranges of config values: the schema's (`Opt.min`/`max`) and the model classes' `arg_ranges`
(checked by constructor_args); out of range is a ConfigError naming the key and the range."""
from pathlib import Path

import pytest

from kvq.config import describe_schema, load_config
from kvq.core.config import ConfigError, Opt, in_range, integer, num, range_text, schema_rows, validate_mapping

ROOT = Path(__file__).resolve().parents[3]
DEMO = ROOT / "config" / "demo_simpleVQA.yml"


@pytest.mark.parametrize("override, key, allowed", [
    ("optimizer.lr=-1", "optimizer.lr", "> 0"),
    ("optimizer.lr=0", "optimizer.lr", "> 0"),
    ("batch_size=0", "batch_size", ">= 1"),
    ("num_epochs=0", "num_epochs", ">= 1"),
    ("num_workers=-1", "num_workers", ">= 0"),
    ("ema_decay=1", "ema_decay", "[0, 1)"),
    ("optimizer.wd=-0.1", "optimizer.wd", ">= 0"),
    ("loss.plcc=-1", "loss.plcc", ">= 0"),
    ("calibration.max_videos=1", "calibration.max_videos", ">= 2"),
    ("data.train.args.sample_types.simpleVQA.clip_len=0", "data.train.args.sample_types.simpleVQA.clip_len", ">= 1"),
    ("model.args.simpleVQA.head.hidden_channels=-5", "model.args.simpleVQA.head.hidden_channels", ">= 1"),
    ("model.args.simpleVQA.backbone.motion_channels=-1", "model.args.simpleVQA.backbone.motion_channels", ">= 0"),
])
def test_out_of_range_is_a_config_error_naming_key_and_range(override: str, key: str, allowed: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(DEMO, [override])
    msg = str(e.value)
    assert f"'{key}'" in msg and f"allowed: {allowed}" in msg and str(DEMO) in msg, msg


def test_in_range_values_and_null_pass() -> None:
    cfg = load_config(DEMO, ["optimizer.lr=1e-9", "num_workers=0", "ema_decay=0", "calibration.max_videos=null",
                             "batch_size=1"])
    assert cfg["optimizer"]["lr"] == 1e-9 and cfg["calibration"]["max_videos"] is None


def test_dropout_ratio_range_of_the_vqa_head() -> None:
    from kvq.core.config import constructor_args
    from models.heads import VQAHead

    with pytest.raises(ConfigError, match=r"'model.args.KSVQE.head.dropout_ratio' is 1.5; allowed: \[0, 1\]"):
        constructor_args(VQAHead, {"dropout_ratio": 1.5}, "model.args.KSVQE.head", "cfg", [])
    assert constructor_args(VQAHead, {"dropout_ratio": 0.0}, "p", "cfg", []) == {"dropout_ratio": 0.0}


def test_range_text_and_in_range() -> None:
    assert range_text(0, None, True) == "> 0" and range_text(1, None) == ">= 1"
    assert range_text(0, 1, high_open=True) == "[0, 1)" and range_text(None, 5) == "<= 5"
    assert in_range(1, 1, None) and not in_range(0, 0, None, True) and not in_range(float("nan"), 0, 1)
    assert in_range(None, 1, None) and in_range(True, 5, None)  # null and booleans are not numbers here


def test_nested_each_values_are_checked() -> None:
    schema = {"w": Opt((dict,), {}, each=num(1.0, min=0))}
    with pytest.raises(ConfigError, match=r"key 'w.a' is -2; allowed: >= 0"):
        validate_mapping({"w": {"a": -2}}, schema, "", "src", [])


def test_ranges_are_in_the_docs_table() -> None:
    rows = schema_rows({"n": integer(1, "count", min=1)})
    assert "(allowed: >= 1)" in rows[0]
    text = describe_schema()
    assert "`optimizer.lr`" in text and "(allowed: > 0)" in text
