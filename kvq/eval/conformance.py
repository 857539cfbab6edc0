"""Reference-equivalence check against the conformance fixtures (see conformance/README.md).

For each `expected_<name>.json`: build the model its manifest describes, load the deterministic
weights of `detweights.fill_state_dict` through the same key mapping used for published
checkpoints, run every case in eval mode (float32, CPU, no_grad) and compare with the
reference outputs. Tolerances: scores, loss and first-16 values within 1e-4 * (1 + |expected|);
`sum` within 1e-5 * abs_sum; shapes equal.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable, Iterator, Optional, Sequence

import torch
from torch import nn

from kvq.core.checkpoint import load_into
from models.registry import BACKBONES
from models.modulation import distortion_contrastive_loss

log = logging.getLogger(__name__)

VALUE_RTOL = 1e-4
SUM_RTOL = 1e-5
SLOWFAST_PREFIX = "feature_extraction."
BACKBONE_MARK = "_backbone."


@dataclass
class Comparison:
    """Accumulates the checks of one case: worst absolute error and the failed checks."""

    max_abs_error: float = 0.0
    failures: list[str] = field(default_factory=list)

    def values(self, name: str, expected: Sequence[float], actual: torch.Tensor) -> None:
        """Element-wise check, tolerance VALUE_RTOL * (1 + |expected|)."""
        got = actual.detach().double().flatten().cpu()
        want = torch.tensor(expected, dtype=torch.float64).flatten()
        if got.numel() < want.numel():
            self.failures.append(f"{name}: {got.numel()} values, expected at least {want.numel()}")
            return
        err = (got[: want.numel()] - want).abs()
        tol = VALUE_RTOL * (1.0 + want.abs())
        self.max_abs_error = max(self.max_abs_error, float(err.max()) if err.numel() else 0.0)
        bad = (err > tol).nonzero().flatten().tolist()
        if bad:
            i = bad[0]
            self.failures.append(f"{name}[{i}]: {float(got[i]):.8g} vs expected {float(want[i]):.8g} "
                                 f"({len(bad)} of {want.numel()} values out of tolerance)")

    def summary(self, name: str, expected: dict, actual: torch.Tensor) -> None:
        """Shape, sum (within SUM_RTOL * abs_sum) and the first values of a tensor."""
        if list(actual.shape) != list(expected["shape"]):
            self.failures.append(f"{name}: shape {list(actual.shape)} vs expected {expected['shape']}")
            return
        total = float(actual.detach().double().sum())
        if abs(total - expected["sum"]) > SUM_RTOL * expected["abs_sum"]:
            self.failures.append(f"{name}.sum: {total:.8g} vs expected {expected['sum']:.8g} "
                                 f"(tolerance {SUM_RTOL * expected['abs_sum']:.3g})")
        self.values(f"{name}.first", expected["first"], actual)

    @property
    def passed(self) -> bool:
        return not self.failures


def compare_case(expected_case: dict, outputs: dict[str, Any]) -> Comparison:
    """Compare `outputs` ({"score", "contrastive_loss", "features" | "slow"/"fast"}) with one case."""
    result = Comparison()
    for name, want in expected_case.items():
        if name in ("input", "seconds"):
            continue
        got = outputs.get(name)
        if got is None:
            result.failures.append(f"{name}: expected by the fixture, not produced by the model")
            continue
        got = torch.as_tensor(got)
        if isinstance(want, dict):
            result.summary(name, want, got)
        else:
            result.values(name, want if isinstance(want, list) else [want], got)
    return result


@dataclass
class CaseResult:
    """One output line of the checker. passed None = not run on purpose (see `skipped`)."""

    model: str
    case: str
    passed: Optional[bool]
    max_abs_error: Optional[float] = None
    skipped: Optional[str] = None
    error: Optional[str] = None
    failures: list[str] = field(default_factory=list)
    seconds: Optional[float] = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.model, "case": self.case,
                               "max_abs_error": self.max_abs_error, "pass": self.passed}
        for key in ("skipped", "error", "failures", "seconds"):
            value = getattr(self, key)
            if value:
                out[key] = value
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


def load_detweights(fixture_dir: str | Path) -> ModuleType:
    """Import `detweights.py` of the fixture folder."""
    path = Path(fixture_dir) / "detweights.py"
    spec = importlib.util.spec_from_file_location("detweights", path)
    if spec is None or not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def backbone_keys(manifest: dict) -> list[str]:
    """Config keys of the `<key>_backbone.*` entries of a manifest, in order of appearance."""
    keys: list[str] = []
    for name in manifest:
        if BACKBONE_MARK in name:
            key = name.split(BACKBONE_MARK, 1)[0]
            if key not in keys:
                keys.append(key)
    return keys


def unregistered_backbone_reason(manifest: dict) -> Optional[str]:
    """Why the manifest's model cannot be built here (a backbone key not registered), else None."""
    for key in backbone_keys(manifest):
        try:
            BACKBONES.get(key)
        except KeyError as exc:
            return f"not run: {exc.args[0]}"
    return None


def build_model(manifest: dict, expected: dict, detweights: ModuleType) -> nn.Module:
    """The model a manifest describes, with the deterministic weights loaded, in eval mode.

    Raises KeyError for an unregistered backbone, CheckpointMismatchError or RuntimeError when
    the weights do not fit (shape mismatch, missing or unexpected keys).
    """
    if all(k.startswith(SLOWFAST_PREFIX) for k in manifest):
        from models.slowfast import SlowFastExtractor, to_extractor_keys

        model = SlowFastExtractor(pretrained=False)
        state, _ = to_extractor_keys(detweights.fill_state_dict(manifest, reference=model.state_dict()))
    else:
        from models.network import VQANetwork

        keys = backbone_keys(manifest)
        if not keys:
            raise RuntimeError("manifest has neither '<key>_backbone.*' nor 'feature_extraction.*' keys")
        backbone_args = {**expected.get("config_backbone", {}), "pretrained": False}
        model = VQANetwork({key: {"backbone": backbone_args, "head": {}} for key in keys})
        state = detweights.fill_state_dict(manifest, reference=model.state_dict())
    report = load_into(model, state)
    if report.missing or report.unexpected:
        raise RuntimeError(f"weights do not match the model: missing {report.missing[:10]}, "
                           f"unexpected {report.unexpected[:10]}")
    return model.eval()


def make_inputs(spec: dict, detweights: ModuleType) -> dict[str, torch.Tensor]:
    """Case inputs: [name, shape, lo, hi] -> det_input(...); a plain list (labels) -> long tensor."""
    inputs = {}
    for name, value in spec.items():
        if len(value) == 4 and isinstance(value[0], str):
            inputs[name] = detweights.det_input(*value)
        else:
            inputs[name] = torch.tensor(value, dtype=torch.long)
    return inputs


def frames_of(spec: dict) -> int:
    """Largest temporal length T among the [B, C, T, H, W] inputs of a case (0 if none)."""
    return max((v[1][2] for v in spec.values() if len(v) == 4 and isinstance(v[0], str) and len(v[1]) == 5),
               default=0)


@torch.no_grad()
def run_case(model: nn.Module, inputs: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Model outputs named as in the fixtures."""
    if not hasattr(model, "key_names"):
        (clip,) = inputs.values()
        slow, fast = model(clip)
        return {"slow": slow, "fast": fast}
    captured: dict[str, torch.Tensor] = {}

    def keep(_module: nn.Module, _args: Any, output: Any) -> None:
        captured["features"] = output[0] if isinstance(output, tuple) else output

    hooks = [model.backbone(key).register_forward_hook(keep) for key in model.key_names]
    try:
        out = model(inputs)
    finally:
        for hook in hooks:
            hook.remove()
    if "distortion_tokens" in out:  # KSVQE: the fixtures hold the loss of the case's batch
        out["contrastive_loss"] = distortion_contrastive_loss(out.pop("distortion_tokens"), inputs["dis_label"])
    return {**captured, **out}


def case_names(cases: list[dict]) -> list[str]:
    """A readable, unique name per case: the det_input name of its first input."""
    names = []
    for i, case in enumerate(cases):
        first = next(iter(case["input"].values()))
        name = first[0] if isinstance(first[0], str) else f"case{i}"
        names.append(name if name not in names else f"{name}#{i}")
    return names


def check_fixture(expected_path: str | Path, detweights: ModuleType,
                  manifest_dirs: Iterable[str | Path] = (), max_frames: Optional[int] = None) -> list[CaseResult]:
    """Run every case of one expected_*.json; one CaseResult per case (never raises for model errors).

    Cases with more than `max_frames` frames are skipped (passed None); a manifest that cannot be
    found, a backbone that is not registered
    or a model that cannot be built fails its cases.
    """
    expected_path = Path(expected_path)
    model_name = expected_path.stem.removeprefix("expected_")
    with open(expected_path) as f:
        expected = json.load(f)
    cases = expected["cases"]
    names = case_names(cases)
    too_long = {i: f"{frames_of(c['input'])} frames > --max-frames {max_frames}" for i, c in enumerate(cases)
                if max_frames is not None and frames_of(c["input"]) > max_frames}
    to_run = [i for i in range(len(cases)) if i not in too_long]

    def unrun(**kw: Any) -> list[CaseResult]:
        return [CaseResult(model_name, name, passed=None, skipped=too_long[i]) if i in too_long
                else CaseResult(model_name, name, passed=False, **kw) for i, name in enumerate(names)]

    manifest_path = next((Path(d) / expected["manifest"] for d in [expected_path.parent, *manifest_dirs]
                          if (Path(d) / expected["manifest"]).is_file()), None)
    if manifest_path is None:
        return unrun(skipped=f"manifest {expected['manifest']} not found")
    if not to_run:
        return unrun()
    with open(manifest_path) as f:
        manifest = json.load(f)
    unregistered = unregistered_backbone_reason(manifest)
    if unregistered:
        return unrun(skipped=unregistered)
    try:
        model = build_model(manifest, expected, detweights)
    except Exception as exc:  # reported as failing lines, the other fixtures still run
        return unrun(error=f"building the model failed: {type(exc).__name__}: {exc}")
    results = unrun()
    for i in to_run:
        results[i] = _run_one(model, model_name, names[i], cases[i], detweights)
    return results


def _run_one(model: nn.Module, model_name: str, name: str, case: dict, detweights: ModuleType) -> CaseResult:
    torch.manual_seed(0)
    start = time.perf_counter()
    try:
        outputs = run_case(model, make_inputs(case["input"], detweights))
    except Exception as exc:
        return CaseResult(model_name, name, passed=False, error=f"{type(exc).__name__}: {exc}")
    seconds = round(time.perf_counter() - start, 2)
    cmp = compare_case(case, outputs)
    return CaseResult(model_name, name, passed=cmp.passed, max_abs_error=cmp.max_abs_error,
                      failures=cmp.failures, seconds=seconds)


def iter_checks(fixture_dir: str | Path, manifest_dirs: Iterable[str | Path] = (),
                only: Optional[Iterable[str]] = None, max_frames: Optional[int] = None) -> Iterator[CaseResult]:
    """check_fixture for every expected_*.json of `fixture_dir` (restricted to `only` names), lazily.

    Raises ValueError for an `only` name without fixture, FileNotFoundError when there is none.
    """
    fixture_dir = Path(fixture_dir)
    paths = sorted(fixture_dir.glob("expected_*.json"))
    available = [p.stem.removeprefix("expected_") for p in paths]
    if only:
        wanted = set(only)
        unknown = sorted(wanted - set(available))
        if unknown:
            raise ValueError(f"no expected_<name>.json for {unknown} in {fixture_dir}; available: {available}")
        paths = [p for p, name in zip(paths, available) if name in wanted]
    if not paths:
        raise FileNotFoundError(f"no expected_*.json in {fixture_dir}")
    detweights = load_detweights(fixture_dir)
    for path in paths:
        log.info("checking %s", path.name)
        yield from check_fixture(path, detweights, manifest_dirs, max_frames)


def check_all(fixture_dir: str | Path, manifest_dirs: Iterable[str | Path] = (),
              only: Optional[Iterable[str]] = None, max_frames: Optional[int] = None) -> list[CaseResult]:
    """All results of `iter_checks`."""
    return list(iter_checks(fixture_dir, manifest_dirs, only, max_frames))
