"""Record torchinfo's cost figures (mult-adds, parameters, memory) as reference data for archspec's cost model.

torchinfo is never a dependency of archspec (nor of its tests): run this by hand in a throwaway venv,
with archspec taken from the checkout through PYTHONPATH (not pip-installed), from the repository root:

    python3 -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install torch==2.14.1 torchvision==0.29.1 torchinfo pydantic pyyaml jinja2
    PYTHONPATH=. /tmp/refvenv/bin/python tests/data/make_torchinfo_reference.py

It writes tests/data/torchinfo-reference.json:
  * "models": torchvision's ResNets and DenseNets (default constructors, eval mode, 1x3x224x224) and
    archspec's own compiled specs/*.yaml (key "spec:<stem>", at each spec's declared input, batch 1);
  * "rule_probes": tiny modules that pin down how torchinfo counts the cases the zoo does not exercise
    (Linear on a 3-D input, ConvTranspose, BatchNorm, LayerNorm, GroupNorm, a batch of 2, a non-leaf
    module with its own parameter, a module called twice);
  * "fields", "layer_columns", "counting_rules": what every number means, with torchinfo's own source.
It exits 1 (after writing the file) if a model's mult-adds differ from the known values below or from
../shared/reference/torchvision-*.json, or if a spec's totals differ from the torchvision model it mirrors.
"""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path

import torch
import torchinfo
import torchvision
from torch import nn
from torchinfo.layer_info import LayerInfo
from torchinfo.model_statistics import ModelStatistics

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))
import archspec  # noqa: E402
from archspec import compile_spec  # noqa: E402

TORCHVISION = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
               "densenet121", "densenet161", "densenet169", "densenet201",
               "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn",
               "alexnet", "squeezenet1_0", "squeezenet1_1", "googlenet", "resnext50_32x4d", "resnext101_32x8d",
               "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2", "mobilenet_v2",
               "mnasnet0_5", "mnasnet0_75", "mnasnet1_0", "mnasnet1_3",
               "shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0",
               "inception_v3", "mobilenet_v3_large", "mobilenet_v3_small",
               "efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3", "efficientnet_b4", "efficientnet_b5", "efficientnet_b6", "efficientnet_b7",
               "efficientnet_v2_s", "efficientnet_v2_m", "efficientnet_v2_l",
          "regnet_x_400mf", "regnet_x_800mf", "regnet_x_1_6gf", "regnet_x_3_2gf", "regnet_x_8gf", "regnet_x_16gf", "regnet_x_32gf",
          "regnet_y_400mf", "regnet_y_800mf", "regnet_y_1_6gf", "regnet_y_3_2gf", "regnet_y_8gf", "regnet_y_16gf", "regnet_y_32gf", "regnet_y_128gf",
          "convnext_tiny", "convnext_small", "convnext_base", "convnext_large"]  # fmt: skip
ARGUMENTS = {  # the zoo's configurations
    "googlenet": {"aux_logits": False, "init_weights": True},
    "inception_v3": {"aux_logits": False, "init_weights": True},
}
INPUTS = {"inception_v3": [1, 3, 299, 299]}  # the rest: INPUT
INPUT = [1, 3, 224, 224]
DEPTH = 100  # depth only changes what torchinfo prints; totals and summary_list do not depend on it
# Known "Total mult-adds" (issue, and ../shared/reference/torchvision-*.json "mult_adds").
EXPECTED_MACS = {"resnet18": 1_814_083_944, "resnet50": 4_089_238_376,
                 "densenet121": 2_834_246_312, "densenet169": 3_360_002_728}  # fmt: skip

FIELDS = {
    "total_mult_adds": "torchinfo's 'Total mult-adds', exact: the sum of `macs` over every leaf row of "
    "summary_list (repeated calls of one module included), for the whole input batch (here batch 1); "
    "non-leaf modules contribute nothing, even their own parameters.",
    "total_params": "'Total params': num_params of each leaf row that is not a repeated call, plus, for each "
    "non-leaf module, its leftover (own, direct) parameters; modules never called in forward are not counted.",
    "trainable_params": "'Trainable params': as total_params, counting only parameters with requires_grad.",
    "total_input": "'Input size (MB)' in bytes: sys.getsizeof(x.untyped_storage()) per input tensor, i.e. "
    "the tensor's bytes plus the Python object overhead of its storage (602,176 = 602,112 + 64 for "
    "1x3x224x224 float32).",
    "total_output_bytes": "'Forward/backward pass size (MB)' in bytes: 2 x output bytes (elements x element "
    "size, whole batch) summed over leaf rows with num_params > 0 (repeated calls included); layers without "
    "parameters (ReLU, pooling, Flatten, Dropout) count 0. The x2 is torchinfo's 'for gradients'.",
    "total_param_bytes": "'Params size (MB)' in bytes: element size x numel of the parameters of leaf rows "
    "that are not repeated calls; non-leaf modules' own parameters and all buffers are NOT included "
    "(so it can be less than 4 x total_params). 'Estimated Total Size' = total_input + total_output_bytes "
    "+ total_param_bytes.",
    "input": "the input_size given to torchinfo.summary, batch first.",
    "macs_rule_by_class": "for each leaf class in the model, the formula torchinfo's LayerInfo.calculate_macs "
    "applied to it (out = the layer's output shape with batch; numel = parameter elements).",
    "layers": "one row per leaf row of torchinfo's summary_list, in execution order; columns in layer_columns.",
}
LAYER_COLUMNS = [
    "qualified module name as in model.named_modules() / the state_dict prefix ('' for the root module)",
    "class name (LayerInfo.class_name)",
    "output shape with batch (LayerInfo.output_size)",
    "num_params (LayerInfo.num_params: the module's parameters, counted again on a repeated call)",
    "macs (LayerInfo.macs, whole batch)",
    "repeated call (LayerInfo.is_recursive): true when the module already ran earlier in this forward; such a "
    "row's macs count in total_mult_adds but its params and param bytes do not",
]


def macs_rule(layer: LayerInfo) -> str:
    names = [n for n, _ in layer.module.named_parameters()]
    if not names:
        return "0 (no parameters)"
    counted = [n for n in names if n in ("weight", "bias")]
    other = [n for n in names if n not in ("weight", "bias") and ("weight" in n or "bias" in n)]
    terms = []
    if counted:
        scale = "out[0] * prod(out[2:])" if "Conv" in layer.class_name else "out[0]"
        terms.append(f"numel({' + '.join(counted)}) * {scale}")
    if other:
        terms.append(f"numel({' + '.join(other)}) * out[0] * out[1]")
    return " + ".join(terms) if terms else "0 (no parameter named weight/bias)"


def record(model: nn.Module, input_size: list[int]) -> dict:
    model = model.eval()
    stats = torchinfo.summary(model, input_size=input_size, verbose=0, depth=DEPTH)
    names = {id(m): n for n, m in model.named_modules()}
    rows, rules = [], {}
    for layer in stats.summary_list:
        if not layer.is_leaf_layer:
            continue
        rows.append([names[id(layer.module)], layer.class_name, list(layer.output_size),
                     layer.num_params, layer.macs, layer.is_recursive])  # fmt: skip
        rules.setdefault(layer.class_name, macs_rule(layer))
    assert sum(r[4] for r in rows) == stats.total_mult_adds
    return {
        "input": list(input_size),
        "total_mult_adds": stats.total_mult_adds,
        "total_params": stats.total_params,
        "trainable_params": stats.trainable_params,
        "total_input": stats.total_input,
        "total_output_bytes": stats.total_output_bytes,
        "total_param_bytes": stats.total_param_bytes,
        "macs_rule_by_class": rules,
        "layers": rows,
    }


class OwnParameter(nn.Module):
    """A non-leaf module with a parameter of its own beside a child."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(4))
        self.lin = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x) * self.scale


class CalledTwice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.conv(x))


def probes() -> dict:
    cases = {
        "linear_2d: Linear(8, 4) on (1, 8)": (nn.Linear(8, 4), [1, 8]),
        "linear_3d: Linear(8, 4) on (1, 5, 8): counted as if the input were (1, 8)": (nn.Linear(8, 4), [1, 5, 8]),
        "conv2d: Conv2d(3, 4, 3) on (1, 3, 8, 8)": (nn.Conv2d(3, 4, 3), [1, 3, 8, 8]),
        "conv2d_batch2: Conv2d(3, 4, 3) on (2, 3, 8, 8): MACs scale with the batch": (nn.Conv2d(3, 4, 3), [2, 3, 8, 8]),
        "conv_transpose2d: ConvTranspose2d(4, 6, 2, stride 2) on (1, 4, 5, 5)": (
            nn.ConvTranspose2d(4, 6, 2, stride=2),
            [1, 4, 5, 5],
        ),
        "batchnorm2d: BatchNorm2d(4) on (1, 4, 5, 5)": (nn.BatchNorm2d(4), [1, 4, 5, 5]),
        "layernorm: LayerNorm([4, 5, 5]) on (1, 4, 5, 5)": (nn.LayerNorm([4, 5, 5]), [1, 4, 5, 5]),
        "layernorm_last: LayerNorm(8) on (1, 5, 8)": (nn.LayerNorm(8), [1, 5, 8]),
        "groupnorm: GroupNorm(2, 4) on (1, 4, 5, 5)": (nn.GroupNorm(2, 4), [1, 4, 5, 5]),
        "nonleaf_own_parameter: Linear(8, 4) then * a (4,) parameter of the parent": (OwnParameter(), [1, 8]),
        "called_twice: one Conv2d(4, 4, 3, padding 1) applied twice": (CalledTwice(), [1, 4, 6, 6]),
    }
    out = {}
    for key, (module, size) in cases.items():
        torch.manual_seed(0)
        out[key] = record(module, size)
    return out


def counting_rules() -> dict:
    return {
        "summary": [
            "MACs are set per leaf call by LayerInfo.calculate_macs from the module's own named_parameters() "
            "and its output shape `out` (with batch): for a parameter named exactly 'weight' or 'bias', "
            "numel * out[0] * prod(out[2:]) if 'Conv' is in the class name (Conv1d/2d/3d and "
            "ConvTranspose1d/2d/3d alike: the OUTPUT spatial size), else numel * out[0]; for other names "
            "containing 'weight'/'bias' (RNN weight_ih_l0 ...) numel * out[0] * out[1].",
            "So Linear on (B, T, F) counts B * params, not B * T * params; BatchNorm, LayerNorm and GroupNorm "
            "count B * (weight + bias numel) = B * 2C (or 2 * prod(normalized_shape)), not per element; "
            "a conv bias counts C_out * prod(out spatial); layers without parameters (ReLU, pooling, "
            "adds, concats) count 0.",
            "Totals (ModelStatistics.__init__) sum leaf rows only: total_mult_adds adds every leaf row's "
            "macs, repeated calls included; total_params/trainable_params add leaf rows that are not "
            "repeated plus non-leaf modules' leftover (own) parameters; the parent's own parameters never "
            "get MACs and are not in total_param_bytes. Modules not called in forward appear nowhere.",
        ],
        "LayerInfo.calculate_macs": inspect.getsource(LayerInfo.calculate_macs),
        "ModelStatistics.__init__": inspect.getsource(ModelStatistics.__init__),
        "construct_hook (sets output_size and output_bytes)": inspect.getsource(torchinfo.torchinfo.construct_hook),
        "get_total_memory_used (total_input)": inspect.getsource(torchinfo.torchinfo.get_total_memory_used),
    }


def dumps(obj, indent: int = 0) -> str:
    """JSON with one line per layer row (indent=1 would give each row's fields a line of its own)."""
    pad = " " * (indent + 1)
    if isinstance(obj, dict) and obj:
        items = [f"{pad}{json.dumps(k)}: {dumps(v, indent + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    if isinstance(obj, list) and obj and all(isinstance(r, list) for r in obj):
        return "[\n" + ",\n".join(pad + json.dumps(r) for r in obj) + "\n" + " " * indent + "]"
    return json.dumps(obj)


def main(only: list[str]) -> None:
    """Record every model and spec, or with names given (`... make_torchinfo_reference.py convnext_tiny`)
    those torchvision models and the specs of those names, keeping the other recorded figures."""
    torch.manual_seed(0)
    reference = HERE / "torchinfo-reference.json"
    models, problems = (json.loads(reference.read_text())["models"] if only else {}), []
    for name in [name for name in TORCHVISION if not only or name in only]:
        models[name] = record(getattr(torchvision.models, name)(**ARGUMENTS.get(name, {})), INPUTS.get(name, INPUT))
        print(f"{name:24} {models[name]['total_mult_adds']:>15,} MACs {models[name]['total_params']:>12,} params")
    for path in [p for p in sorted((ROOT / "specs").glob("*.yaml")) if not only or p.stem in only]:
        shape = [1, *archspec.analyze(str(path)).input_shape]
        key = f"spec:{path.stem}"
        models[key] = record(compile_spec(str(path)), shape)
        print(f"{key:24} {models[key]['total_mult_adds']:>15,} MACs {models[key]['total_params']:>12,} params {shape}")

    expected = dict(EXPECTED_MACS)
    for ref in sorted((ROOT.parent / "shared" / "reference").glob("torchvision-*.json")):
        data = json.loads(ref.read_text())
        if "mult_adds" in data:
            expected[data["model"]] = data["mult_adds"]
    for name, macs in expected.items():
        if models[name]["total_mult_adds"] != macs:
            problems.append(f"{name}: torchinfo {models[name]['total_mult_adds']:,} MACs, expected {macs:,}")
    totals = ["total_mult_adds", "total_params", "total_output_bytes", "total_param_bytes"]
    for name in TORCHVISION:
        spec = models.get(f"spec:{name}")
        for field in totals if spec else []:
            if spec[field] != models[name][field]:
                problems.append(f"spec:{name}: {field} {spec[field]:,}, torchvision {models[name][field]:,}")

    versions = f"torchinfo {torchinfo.__version__}, torch {torch.__version__}, torchvision {torchvision.__version__}"
    data = {
        "source": versions,
        "input": INPUT,
        "how": "torchinfo.summary(model.eval(), input_size=input, verbose=0, depth=100) on CPU; "
        "written by tests/data/make_torchinfo_reference.py",
        "fields": FIELDS,
        "layer_columns": LAYER_COLUMNS,
        "counting_rules": counting_rules(),
        "models": dict(sorted(models.items(), key=lambda item: _order(item[0]))),
        "rule_probes": probes(),
    }
    (HERE / "torchinfo-reference.json").write_text(dumps(data) + "\n")
    print("wrote", HERE / "torchinfo-reference.json")
    for problem in problems:
        print("MISMATCH", problem)
    sys.exit(1 if problems else 0)


def _order(key: str) -> tuple:
    """torchvision's models in TORCHVISION's order, then the specs by name: the order of a full run."""
    return (1, 0, key) if key.startswith("spec:") else (0, TORCHVISION.index(key), key)


if __name__ == "__main__":
    main(sys.argv[1:])
