from pathlib import Path

import pytest
import yaml

from kvq.config import ConfigError, describe_schema, load_config
from models.network import backbone_kwargs

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "config").glob("*.yml"))


def write(tmp_path: Path, data: dict) -> Path:
    p = tmp_path / "c.yml"
    p.write_text(yaml.safe_dump(data))
    return p


def minimal() -> dict:
    return {"name": "x", "model": {"type": "simpleVQA", "args": {"simpleVQA": {"backbone": {"pretrained": False}}}},
            "data": {"train": {"type": "ViewDecompositionDataset_add_forSimpleVQA",
                               "args": {"anno_file": "a.csv", "sample_types": {"simpleVQA": {"clip_len": 8}}}}}}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_validate_and_use_relative_paths(path: Path) -> None:
    cfg = load_config(path)
    assert cfg["name"]
    text = path.read_text()
    assert "/data2" not in text and "/home/" not in text
    for spec in cfg["data"].values():
        assert not Path(spec["args"]["anno_file"]).is_absolute()


def test_defaults_are_filled(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, minimal()))
    assert cfg["batch_size"] == 4 and cfg["optimizer"]["lr"] == 3e-5 and cfg["ema_decay"] == 0.999
    view = cfg["data"]["train"]["args"]["sample_types"]["simpleVQA"]
    assert view["crop"] == 448 and view["t_frag"] is None and cfg["data"]["train"]["args"]["phase"] == "test"


def test_unknown_key_names_key_file_and_nearest(tmp_path: Path) -> None:
    data = minimal()
    data["data"]["train"]["args"]["anno_fle"] = "x"
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert str(path) in msg and "data.train.args.anno_fle" in msg and "did you mean 'anno_file'" in msg


def test_unknown_top_level_key(tmp_path: Path) -> None:
    data = {**minimal(), "num_epoch": 3}
    with pytest.raises(ConfigError, match="did you mean 'num_epochs'"):
        load_config(write(tmp_path, data))


@pytest.mark.parametrize("key, value, message", [
    ("batch_size", "four", "must be integer"),
    ("batch_size", 2.5, "must be integer"),
    ("ema", "yes", "must be boolean"),
    ("amp", "fp8", "allowed: off, bf16, fp16"),
])
def test_wrong_types(tmp_path: Path, key: str, value, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, {**minimal(), key: value}))


def test_missing_required_key(tmp_path: Path) -> None:
    data = minimal()
    del data["name"]
    with pytest.raises(ConfigError, match="missing required key 'name'"):
        load_config(write(tmp_path, data))


def test_set_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, minimal())
    cfg = load_config(path, ["optimizer.lr=1e-3", "num_epochs=2", "data.train.args.phase=train"])
    assert cfg["optimizer"]["lr"] == 1e-3 and cfg["num_epochs"] == 2
    assert cfg["data"]["train"]["args"]["phase"] == "train"
    with pytest.raises(ConfigError, match="--set"):
        load_config(path, ["optimizer.lrr=1"])
    with pytest.raises(ConfigError, match="KEY.PATH=VALUE"):
        load_config(path, ["optimizer.lr"])


def test_backbone_argument_typo(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="did you mean 'pretrained'"):
        backbone_kwargs("simpleVQA", {"pretraned": False}, "c.yml")
    assert backbone_kwargs("simpleVQA", {"pretrained": None}) == {}


def test_schema_is_documented() -> None:
    text = describe_schema()
    assert "`optimizer.backbone_lr_mult`" in text and "`data.<name>.args.sample_types`" in text


def test_readme_documents_every_key() -> None:
    assert describe_schema() in (ROOT / "README.md").read_text()


def test_clip_len_must_split_into_t_frag_segments(tmp_path: Path) -> None:
    path = write(tmp_path, minimal())
    assert load_config(path, ["data.train.args.sample_types.simpleVQA.t_frag=4"])
    with pytest.raises(ConfigError, match="clip_len 8 is not a multiple of t_frag 3"):
        load_config(path, ["data.train.args.sample_types.simpleVQA.t_frag=3"])
