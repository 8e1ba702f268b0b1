"""Record torchvision's state_dict manifests and outputs for the model zoo tests.

Run by hand where torchvision is installed (it is not a test dependency):
    python tests/data/make_torchvision_reference.py [MODEL ...]
It writes tests/data/torchvision-<model>.json (manifests; the three from ../shared/reference are kept)
and tests/data/torchvision-outputs.json (outputs on deterministic weights and input).
"""

from __future__ import annotations

import json
import sys
from collections import OrderedDict
from pathlib import Path

import torch
import torchvision

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from reference_weights import GAINS, fill, reference_input  # noqa: E402

MODELS = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
          "densenet121", "densenet161", "densenet169", "densenet201",
          "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn",
          "alexnet", "squeezenet1_0", "squeezenet1_1", "googlenet",
          "resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2",
          "mobilenet_v2", "mnasnet0_5", "mnasnet0_75", "mnasnet1_0", "mnasnet1_3",
          "shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0",
          "inception_v3", "mobilenet_v3_large", "mobilenet_v3_small",
          "efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3", "efficientnet_b4", "efficientnet_b5", "efficientnet_b6", "efficientnet_b7",
          "efficientnet_v2_s", "efficientnet_v2_m", "efficientnet_v2_l",
          "regnet_x_400mf", "regnet_x_800mf", "regnet_x_1_6gf", "regnet_x_3_2gf", "regnet_x_8gf", "regnet_x_16gf", "regnet_x_32gf",
          "regnet_y_400mf", "regnet_y_800mf", "regnet_y_1_6gf", "regnet_y_3_2gf", "regnet_y_8gf", "regnet_y_16gf", "regnet_y_32gf", "regnet_y_128gf",
          "convnext_tiny", "convnext_small", "convnext_base", "convnext_large"]  # fmt: skip
# The zoo issue's configurations: the Inception nets without their auxiliary classifiers.
ARGUMENTS = {
    "googlenet": {"aux_logits": False, "init_weights": True},
    "inception_v3": {"aux_logits": False, "init_weights": True},
}
INPUTS = {"inception_v3": (3, 299, 299)}  # the rest: (3, 224, 224)


def main(only: list[str]) -> None:
    """Record every model, or with names given (`python make_torchvision_reference.py convnext_tiny`)
    only those, keeping the other recorded outputs."""
    outputs_file = HERE / "torchvision-outputs.json"
    outputs = json.loads(outputs_file.read_text())["outputs"] if only else {}
    unknown = sorted(set(only) - set(MODELS))
    if unknown:
        raise SystemExit(f"not in MODELS: {', '.join(unknown)}")
    for name in only or MODELS:
        model = getattr(torchvision.models, name)(**ARGUMENTS.get(name, {})).eval()
        manifest_file = HERE / f"torchvision-{name}.json"
        if not manifest_file.exists():
            manifest = {
                "model": name,
                "source": f"torchvision {torchvision.__version__} model constructor with "
                + (", ".join(f"{k}={v}" for k, v in ARGUMENTS[name].items()) if name in ARGUMENTS else "default arguments"),
                "input": list(INPUTS.get(name, (3, 224, 224))),
                "output": [1000],
                "parameters": sum(p.numel() for p in model.parameters()),
                "state_dict": [[k, list(t.shape), str(t.dtype).removeprefix("torch.")]
                               for k, t in model.state_dict().items()],
            }  # fmt: skip
            manifest_file.write_text(json.dumps(manifest, indent=1) + "\n")
        state = model.state_dict()
        filled = OrderedDict(fill(state, GAINS.get(name, 1.0)))
        filled._metadata = state._metadata  # MNASNet's loader reads its version from it
        model.load_state_dict(filled)
        with torch.no_grad():
            out = model(reference_input(INPUTS.get(name, (3, 224, 224))))[0]
        outputs[name] = [round(v, 6) for v in out.tolist()]
        print(name, float(out.abs().mean()))
    source = f"torchvision {torchvision.__version__}, torch {torch.__version__}"
    ordered = {name: outputs[name] for name in MODELS if name in outputs}
    outputs_file.write_text(json.dumps({"source": source, "outputs": ordered}) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
