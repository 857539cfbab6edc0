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


def typo_message(tmp_path: Path, data: dict) -> str:
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value)
    return str(err.value)


def test_unknown_backbone_is_named_at_load(tmp_path: Path) -> None:
    data = minimal()
    data["model"] = {"args": {"simpleVqa": {"backbone": {"pretrained": False}}}}
    msg = typo_message(tmp_path, data)
    assert "'model.args.simpleVqa'" in msg and "did you mean 'simpleVQA'" in msg


@pytest.mark.parametrize("part, key, nearest", [("backbone", "pretraned", "pretrained"),
                                                ("head", "hidden_channel", "hidden_channels")])
def test_backbone_and_head_argument_typos_are_named_at_load(tmp_path: Path, part: str, key: str,
                                                            nearest: str) -> None:
    data = minimal()
    data["model"]["args"]["simpleVQA"][part] = {key: 1}
    msg = typo_message(tmp_path, data)
    assert f"'model.args.simpleVQA.{part}.{key}'" in msg and f"did you mean '{nearest}'" in msg


def test_unknown_dataset_type_is_named_at_load(tmp_path: Path) -> None:
    data = minimal()
    data["data"]["train"]["type"] = "ViewDecompositionDataset_add_forSimpleVqa"
    msg = typo_message(tmp_path, data)
    assert "'data.train.type'" in msg and "did you mean 'ViewDecompositionDataset_add_forSimpleVQA'" in msg


def test_view_keys_must_apply_to_the_view(tmp_path: Path) -> None:
    data = minimal()
    data["data"]["train"]["args"]["sample_types"]["simpleVQA"]["fragments_h"] = 7
    msg = typo_message(tmp_path, data)
    assert "'data.train.args.sample_types.simpleVQA.fragments_h' does not apply" in msg and "crop" in msg
    # size_h/size_w: read by KSVQE's technical view (its CLIP view), not by SimpleVQA's dataset
    technical = {"technical": {"fragments_h": 7, "size_h": 112, "clip_len": 8}}
    data = minimal()
    data["data"]["train"]["args"]["sample_types"] = technical
    assert "technical.size_h' does not apply" in typo_message(tmp_path, data)
    data["data"]["train"]["type"] = "ViewDecompositionDataset_KVQ"
    view = load_config(write(tmp_path, data))["data"]["train"]["args"]["sample_types"]["technical"]
    assert view["size_h"] == 112 and view["fsize_h"] == 32 and "resize" not in view  # defaults: what it reads


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_the_config_a_checkpoint_stores_validates_as_it_is(path: Path) -> None:
    """train.py stores `dict(cfg)` (validated, defaults filled in, views pruned to what they read):
    validated again, as `checkpoint_config` does, it comes back unchanged."""
    from kvq.config import validate

    stored = dict(load_config(path))
    assert validate(stored, "ckpt (stored config)") == stored


def test_view_options_are_what_the_view_functions_take() -> None:
    from datasets.views import VIEWS, view_options
    from datasets.schema import VIEW

    for prefix in VIEWS:
        assert view_options(prefix) <= set(VIEW.children), prefix
    assert view_options("simpleVQA") == {"resize", "crop"} and view_options("aesthetic_x") == {"size_h", "size_w"}


def test_amp_off_as_yaml_writes_it(tmp_path: Path) -> None:
    path = write(tmp_path, minimal())
    path.write_text(path.read_text() + "amp: off\n")
    assert load_config(path)["amp"] == "off"
    assert load_config(path, ["amp=bf16"])["amp"] == "bf16"
    with pytest.raises(ConfigError, match="'amp' is true; say which precision"):
        load_config(path, ["amp=true"])


def test_model_type_is_optional_and_must_match_model_args(tmp_path: Path) -> None:
    data = minimal()
    del data["model"]["type"]
    assert load_config(write(tmp_path, data))["model"]["type"] is None
    data["model"]["type"] = "KSVQE"
    assert "'model.type' names 'KSVQE', which is not a key of model.args" in typo_message(tmp_path, data)


def test_legacy_backbone_keys_are_dropped_with_a_warning(tmp_path: Path) -> None:
    data = minimal()
    data["model"] = {"type": "KSVQE", "args": {"KSVQE": {"backbone": {"pretrained": False, "qls_swin": True,
                                                                        "a1": None}}}}
    data["data"]["train"]["type"] = "ViewDecompositionDataset_KVQ"
    cfg = load_config(write(tmp_path, data))
    assert cfg["model"]["args"]["KSVQE"]["backbone"] == {"pretrained": False}
    assert any("model.args.KSVQE.backbone.qls_swin' is ignored" in w for w in cfg.warnings)


def test_config_typo_exits_2_before_any_model_is_built(tmp_path: Path, monkeypatch, caplog) -> None:
    import train
    from kvq.cli import run_main

    data = minimal()
    data["model"]["args"]["simpleVQA"]["head"] = {"hidden_channel": 8}
    monkeypatch.setattr("kvq.engine.trainer.create_model", lambda cfg: pytest.fail("model built"))
    monkeypatch.setattr("sys.argv", ["train.py", "-o", str(write(tmp_path, data)), "-r", str(tmp_path / "out")])
    with pytest.raises(SystemExit) as exit_:
        run_main(train.main)
    assert exit_.value.code == 2
    assert "did you mean 'hidden_channels'" in caplog.text and not (tmp_path / "out").exists()


def test_load_path_is_found_where_weights_are(tmp_path: Path, isolated_weight_dirs: Path) -> None:
    import torch

    from kvq.core.checkpoint import load_checkpoint_file
    from kvq.core.weights import MissingWeightsError

    name = "KSVQE_techniqual_pretrainonLSVQ.pth"
    with pytest.raises(MissingWeightsError, match=f"'{name}' does not exist.*{isolated_weight_dirs}.*"
                                                  "KVQ-Challenge-CVPR-NTIRE2024"):
        load_checkpoint_file(name)
    torch.save({"state_dict": {"w": torch.ones(1)}}, isolated_weight_dirs / name)
    assert torch.equal(load_checkpoint_file(name)["state_dict"]["w"], torch.ones(1))
    cfg = load_config(ROOT / "config" / "Kwai_KSVQE.yml")
    assert torch.equal(load_checkpoint_file(cfg["load_path"])["state_dict"]["w"], torch.ones(1))
    with pytest.raises(MissingWeightsError, match="'sub/KSVQE_techniqual_pretrainonLSVQ.pth' does not exist"):
        load_checkpoint_file(f"sub/{name}")  # a path with a folder must exist as given


def test_schema_is_documented() -> None:
    text = describe_schema()
    assert "`optimizer.backbone_lr_mult`" in text and "`data.<name>.args.sample_types`" in text


def test_readme_documents_every_key() -> None:
    assert describe_schema() in (ROOT / "docs" / "configuration.md").read_text()


def test_clip_len_must_split_into_t_frag_segments(tmp_path: Path) -> None:
    path = write(tmp_path, minimal())
    assert load_config(path, ["data.train.args.sample_types.simpleVQA.t_frag=4"])
    with pytest.raises(ConfigError, match="clip_len 8 is not a multiple of t_frag 3"):
        load_config(path, ["data.train.args.sample_types.simpleVQA.t_frag=3"])
