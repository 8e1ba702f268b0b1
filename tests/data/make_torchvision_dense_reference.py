"""Record torchvision's dense-prediction models (segmentation, detection backbones, video) for the zoo tests.

Run by hand where torchvision is installed (it is not a test dependency):
    python tests/data/make_torchvision_dense_reference.py [MODEL ...]
It writes tests/data/torchvision-dense-<model>.json for every model in BUILDS, or only those named:
the state_dict manifest and the outputs on deterministic weights and input (tests/reference_weights.py).
No weights are downloaded. Each model is built as torchvision builds it for its pretrained weights
(FrozenBatchNorm2d where those have it), the detection backbones alone (their own state_dict keys).
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections import OrderedDict
from pathlib import Path

import torch
import torchvision
from torchvision.models import segmentation, video
from torchvision.models.detection import (
    fasterrcnn_mobilenet_v3_large_fpn,
    fasterrcnn_resnet50_fpn,
    maskrcnn_resnet50_fpn_v2,
    retinanet_resnet50_fpn,
    ssd300_vgg16,
    ssdlite320_mobilenet_v3_large,
)
from torchvision.models.detection.backbone_utils import mobilenet_backbone, resnet_fpn_backbone
from torchvision.ops.feature_pyramid_network import LastLevelP6P7
from torchvision.ops.misc import FrozenBatchNorm2d

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from reference_weights import GAINS, fill, reference_input  # noqa: E402

# name -> the expression that builds it (evaluated as written, and recorded as the file's source).
# The segmentation models as their pretrained weights build them (aux_loss=True, 21 classes); the
# detection backbones as the pretrained detectors build them: ResNet-50 and MobileNetV3 with
# FrozenBatchNorm2d (weights=None would give BatchNorm2d), maskrcnn v2 and SSD the same either way.
BUILDS = {
    "fcn_resnet50": "segmentation.fcn_resnet50(weights=None, weights_backbone=None, num_classes=21, aux_loss=True)",
    "fcn_resnet101": "segmentation.fcn_resnet101(weights=None, weights_backbone=None, num_classes=21, aux_loss=True)",
    "deeplabv3_resnet50": "segmentation.deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=21, aux_loss=True)",
    "deeplabv3_resnet101": "segmentation.deeplabv3_resnet101(weights=None, weights_backbone=None, num_classes=21, aux_loss=True)",
    "deeplabv3_mobilenet_v3_large": "segmentation.deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21, aux_loss=True)",
    "lraspp_mobilenet_v3_large": "segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21)",
    "fasterrcnn_resnet50_fpn_backbone": 'resnet_fpn_backbone(backbone_name="resnet50", weights=None, norm_layer=FrozenBatchNorm2d, trainable_layers=3)',
    "retinanet_resnet50_fpn_backbone": 'resnet_fpn_backbone(backbone_name="resnet50", weights=None, norm_layer=FrozenBatchNorm2d, trainable_layers=3, returned_layers=[2, 3, 4], extra_blocks=LastLevelP6P7(256, 256))',
    "maskrcnn_resnet50_fpn_v2_backbone": "maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None).backbone",
    "fasterrcnn_mobilenet_v3_large_fpn_backbone": 'mobilenet_backbone(backbone_name="mobilenet_v3_large", weights=None, fpn=True, norm_layer=FrozenBatchNorm2d, trainable_layers=3)',
    "ssd300_vgg16_backbone": "ssd300_vgg16(weights=None, weights_backbone=None).backbone",
    "ssdlite320_mobilenet_v3_large_backbone": "ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None).backbone",
    "r3d_18": "video.r3d_18(weights=None)",
    "mc3_18": "video.mc3_18(weights=None)",
    "r2plus1d_18": "video.r2plus1d_18(weights=None)",
    "s3d": "video.s3d(weights=None)",
}  # fmt: skip
# The detectors whose backbone (built with weights=None, so with BatchNorm2d) must have the same
# state_dict keys and shapes as the pretrained-built one, num_batches_tracked aside.
SAME_KEYS_AS = {
    "fasterrcnn_resnet50_fpn_backbone": "fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None).backbone",
    "retinanet_resnet50_fpn_backbone": "retinanet_resnet50_fpn(weights=None, weights_backbone=None).backbone",
    "fasterrcnn_mobilenet_v3_large_fpn_backbone": "fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None).backbone",
}  # fmt: skip
INPUTS = {
    "ssd300_vgg16_backbone": (3, 300, 300),
    "ssdlite320_mobilenet_v3_large_backbone": (3, 320, 320),
    "r3d_18": (3, 8, 128, 160),
    "mc3_18": (3, 8, 128, 160),
    "r2plus1d_18": (3, 8, 128, 160),
    "s3d": (3, 16, 256, 288),  # its avgpool takes 2x7x7, so at least 16 frames of 224x224
}  # the rest: (3, 256, 320)
# Further sizes recorded under "outputs_at".
MORE_INPUTS = {
    "ssd300_vgg16_backbone": [(3, 320, 320)],
    "ssdlite320_mobilenet_v3_large_backbone": [(3, 256, 320)],
}
# The MobileNetV3-based models take mobilenet_v3_large's gain; the rest unit scales.
MOBILENET_V3 = {"deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large",
                "fasterrcnn_mobilenet_v3_large_fpn_backbone", "ssdlite320_mobilenet_v3_large_backbone"}  # fmt: skip
SAMPLES = 256


def build(expression: str) -> torch.nn.Module:
    return eval(expression)  # one of the constant expressions above


def gain(name: str) -> float:
    return GAINS["mobilenet_v3_large"] if name in MOBILENET_V3 else 1.0


def manifest(state: dict[str, torch.Tensor]) -> list:
    return [[k, list(t.shape), str(t.dtype).removeprefix("torch.")] for k, t in state.items()]


def check_same_keys(name: str, state: dict[str, torch.Tensor]) -> None:
    """The backbone built by hand has the detector's own backbone's keys and shapes."""
    if name not in SAME_KEYS_AS:
        return
    theirs = build(SAME_KEYS_AS[name]).state_dict()
    theirs = [e for e in manifest(theirs) if not e[0].endswith("num_batches_tracked")]
    ours = [e for e in manifest(state) if not e[0].endswith("num_batches_tracked")]
    if ours != theirs:
        raise SystemExit(f"{name}: state_dict differs from {SAME_KEYS_AS[name]}")


def load_filled(model: torch.nn.Module, gain: float) -> None:
    state = model.state_dict()
    filled = OrderedDict(fill(state, gain))
    filled._metadata = state._metadata  # versioned loaders (MNASNet's) read it
    model.load_state_dict(filled)


def summary(tensor: torch.Tensor) -> dict:
    """Shape (without batch), mean, mean of absolute values and every (numel // 256)th value of
    the first batch item."""
    first = tensor[0].double()
    flat = first.flatten()
    step = max(1, flat.numel() // SAMPLES)
    return {
        "shape": list(first.shape),
        "mean": float(first.mean()),
        "abs_mean": float(first.abs().mean()),
        "sample": [round(v, 6) for v in flat[::step].tolist()],
    }


def outputs(model: torch.nn.Module, shape: tuple[int, ...]) -> dict:
    with torch.no_grad():
        out = model(reference_input(shape))
    items = out.items() if isinstance(out, dict) else [("output", out)]
    return {key: summary(t) for key, t in items}


def degenerate(recorded: dict) -> list[str]:
    return [key for key, s in recorded.items()
            if not all(math.isfinite(v) for v in s["sample"] + [s["mean"], s["abs_mean"]])
            or s["abs_mean"] < 1e-6 or s["abs_mean"] > 1e4]  # fmt: skip


def record(name: str) -> dict:
    model = build(BUILDS[name]).eval()
    state = model.state_dict()
    check_same_keys(name, state)
    load_filled(model, gain(name))
    shape = INPUTS.get(name, (3, 256, 320))
    entry = {
        "model": name,
        "source": f"torchvision {torchvision.__version__}, torch {torch.__version__}: {BUILDS[name]}; "
        f"eval mode, fill(state_dict, gain={gain(name)}), batch of 1 reference_input",
        "input": list(shape),
        "parameters": sum(p.numel() for p in model.parameters()),
        "state_dict": manifest(state),
        "outputs": outputs(model, shape),
    }
    if name in MORE_INPUTS:
        entry["outputs_at"] = {"x".join(map(str, s)): outputs(model, s) for s in MORE_INPUTS[name]}
    return entry


def dumps(entry: dict) -> str:
    """JSON with one line per list of numbers and per state_dict row."""
    text = json.dumps(entry, indent=1)
    text = re.sub(r"\[\s*([^\[\]{}]*?)\s*\]", lambda m: "[" + re.sub(r",\s+", ", ", m.group(1)) + "]", text)
    return re.sub(r"\[\s*(\"[^\"]*\"),\s*(\[[^\]]*\]),\s*(\"[^\"]*\")\s*\]", r"[\1, \2, \3]", text)


def main(only: list[str]) -> None:
    unknown = sorted(set(only) - set(BUILDS))
    if unknown:
        raise SystemExit(f"not in BUILDS: {', '.join(unknown)}")
    for name in only or BUILDS:
        entry = record(name)
        for size, recorded in [("", entry["outputs"])] + list(entry.get("outputs_at", {}).items()):
            bad = degenerate(recorded)
            if bad:
                raise SystemExit(f"{name} {size}: degenerate outputs {bad}")
            for key, s in recorded.items():
                print(name, size, key, s["shape"], f"mean {s['mean']:.4g} abs_mean {s['abs_mean']:.4g}")
        text = dumps(entry)
        assert json.loads(text) == entry
        (HERE / f"torchvision-dense-{name}.json").write_text(text + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
