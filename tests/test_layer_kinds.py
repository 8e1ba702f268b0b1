"""Every layer kind and block kind, compiled and run: static shapes and parameter counts equal torch's.

Each case in CASES is a small spec (a dict, or YAML text). For each one the test compiles it, runs a
forward pass in train mode (batch 2) and in eval mode (batch 3), and checks with forward hooks that
every submodule's real input and output shapes equal the `in_shape` / `out_shape` of the IR node with
the same qualified path, that modules and IR nodes correspond one to one, and that the parameter
count of every node, and of the whole model, equals torch's.

`test_every_kind_has_a_case` fails when a kind in the registry has no passing case, and
`test_every_field_is_exercised` when a field of a kind is never given a non-default value, so a new
kind or option has to get a case here. tests/test_differential.py runs every case through the
emitter too (emitted module == live module).
"""

from __future__ import annotations

import textwrap

import pytest
import torch

from archspec import SpecError, analyze, compile_spec, registry
from archspec.frontend import validate as schema
from archspec.registry.fields import LAYER_FIELDS, declared_fields
from archspec.analyses.dataflow import tensor_path
from archspec.core.ir import Op, walk
from archspec.frontend.expand import expand
from archspec.analyses.analyze import read

TRAIN_BATCH, EVAL_BATCH = 2, 3


def spec(input_shape, *layers, name="layer_case"):
    """A spec dict; `layers` are written as in YAML: `"relu"`, `{"linear": 3}`, `{"conv": {...}}`."""
    return {"archspec": 1, "name": name, "input": list(input_shape), "layers": list(layers)}


def yaml_spec(text: str) -> str:
    return textwrap.dedent(text).strip() + "\n"


def case(id, source):
    """One spec to check."""
    return pytest.param(source, id=id)


ACTIVATIONS = ["relu", {"leaky_relu": 0.2}, "sigmoid", "tanh", "gelu", "silu", "hardswish", "relu6", "hardsigmoid",
               "mish", "elu", "softplus", "hardtanh", "prelu"]  # fmt: skip
RESIDUAL_ACTIVATIONS = tuple(registry.ACTIVATIONS)

# fmt: off
INPLACE = ["relu", "relu6", "leaky_relu", "elu", "hardtanh", "hardswish", "hardsigmoid", "silu", "mish"]
CASES = [
    # ------------------------------------------------------------------ conv
    case("conv1d-stride-dilation", spec([3, 20], {"conv": {"out": 4, "kernel": 3, "stride": 2, "padding": 1, "dilation": 2}})),
    case("conv2d-groups-nobias-per-dim", spec([4, 9, 11], {"conv": {
        "out": 6, "kernel": [3, 2], "stride": [2, 1], "padding": [1, 0], "groups": 2, "bias": False}})),
    case("conv2d-same-even-kernel-dilation", spec([3, 10, 9], {"conv": {"out": 4, "kernel": 4, "padding": "same", "dilation": 2}})),
    case("conv2d-valid-stride", spec([3, 10, 9], {"conv": {"out": 4, "kernel": 3, "stride": 2, "padding": "valid"}})),
    case("conv1d-same-groups", spec([4, 7], {"conv": {"out": 8, "kernel": [5], "padding": "same", "groups": 4}})),
    case("conv3d-groups-dilation", spec([2, 5, 6, 7], {"conv": {
        "out": 4, "kernel": [1, 3, 3], "stride": [1, 2, 2], "padding": [0, 1, 1], "dilation": [1, 1, 2], "groups": 2}})),
    case("conv3d-same", spec([2, 4, 5, 6], {"conv": {"out": 3, "kernel": 3, "padding": "same", "bias": False}})),
    case("conv-depthwise", spec([6, 8, 8], {"conv": {"out": 6, "kernel": 3, "padding": 1, "groups": 6}})),
    # ------------------------------------------------------------------ conv_transpose
    case("conv_transpose1d-output_padding", spec([4, 5], {"conv_transpose": {"out": 2, "kernel": 3, "stride": 2, "output_padding": 1}})),
    case("conv_transpose2d-groups-per-dim", spec([4, 5, 6], {"conv_transpose": {
        "out": 6, "kernel": [3, 4], "stride": [2, 3], "padding": [1, 0], "output_padding": [1, 2], "groups": 2, "bias": False}})),
    case("conv_transpose1d-output_padding-below-dilation", spec([3, 5], {"conv_transpose": {
        "out": 2, "kernel": 3, "dilation": 2, "output_padding": 1}})),
    case("conv_transpose3d", spec([2, 3, 4, 5], {"conv_transpose": {"out": 2, "kernel": 2, "stride": 2, "dilation": [1, 2, 1]}})),
    # ------------------------------------------------------------------ normalisation
    case("batchnorm-features", spec([2, 3], "flatten", {"batchnorm": {"momentum": None}})),
    case("batchnorm-1d", spec([3, 8], {"batchnorm": {"eps": 1e-3, "momentum": 0.5}})),
    case("batchnorm-2d-affine-false", spec([3, 4, 5], {"batchnorm": {"affine": False}})),
    case("batchnorm-3d-no-running-stats", spec([2, 3, 4, 5], {"batchnorm": {"track_running_stats": False}})),
    case("batchnorm-after-linear", spec([3, 4], "flatten", {"linear": 5}, "batchnorm")),
    case("layernorm-all-dims", spec([3, 4, 5], "layernorm")),
    case("layernorm-dims", spec([3, 4, 5], {"layernorm": 1}, {"layernorm": {"dims": 2, "eps": 1e-3}})),
    case("layernorm-affine-false", spec([3, 4, 5], {"layernorm": {"dims": 3, "affine": False}})),
    case("layernorm-no-bias", spec([3, 4, 5, 2], {"layernorm": {"dims": 2, "bias": False}})),
    case("layernorm-features", spec([3, 4], "flatten", {"layernorm": 1})),
    case("groupnorm-2d", spec([6, 4, 4], {"groupnorm": 3})),
    case("groupnorm-1d-affine-false", spec([6, 5], {"groupnorm": {"groups": 2, "affine": False, "eps": 1e-3}})),
    case("groupnorm-3d", spec([4, 2, 3, 3], {"groupnorm": 4})),
    case("instance_norm-1d", spec([3, 5], "instance_norm")),
    case("instance_norm-2d-affine-tracking", spec([3, 4, 5], {"instance_norm": {"affine": True, "track_running_stats": True}})),
    case("instance_norm-3d-momentum-eps", spec([2, 2, 3, 4], {"instance_norm": {
        "track_running_stats": True, "momentum": 0.3, "eps": 1e-3}}, {"instance_norm": {"track_running_stats": True, "momentum": None}})),
    case("instance_norm-spatial-size-1-in-one-dim", spec([3, 1, 4], {"instance_norm": {"affine": True}})),
    # ------------------------------------------------------------------ activations
    case("activations", spec([3, 4, 4], *ACTIVATIONS)),
    case("activations-features", spec([3, 4], "flatten", *ACTIVATIONS)),
    case("gelu-tanh", spec([3, 5], {"gelu": {"approximate": "tanh"}})),
    case("leaky_relu-negative-slope", spec([3, 5], {"leaky_relu": {"slope": -0.5}})),
    case("elu-alpha", spec([3, 5], {"elu": 0.5}, {"elu": {"alpha": -0.2}})),
    case("softplus-beta-threshold", spec([3, 5], {"softplus": 2}, {"softplus": {"beta": 0.5, "threshold": 1.5}})),
    case("hardtanh-min-max", spec([3, 4, 4], {"hardtanh": {"min": 0, "max": 6}}, {"hardtanh": {"min": -2.5}}, {"hardtanh": {"max": 0.5}})),
    case("prelu-per-channel-init", spec([3, 4, 4], {"prelu": {"per_channel": True, "init": 0.1}}, {"prelu": {"init": -0.5}})),
    case("prelu-per-channel-1d-3d-features", spec([4, 3, 2, 2], {"prelu": {"per_channel": True}}, {"conv": {"out": 5, "kernel": 1}},
                                                  "flatten", {"prelu": {"name": "act", "per_channel": True}})),
    case("prelu-per-channel-1d", spec([6, 5], {"prelu": {"per_channel": True}})),
    case("softmax-channels", spec([3, 4, 4], "softmax")),
    case("softmax-last-and-batch", spec([3, 4, 4], {"softmax": -1}, {"softmax": {"dim": 0}})),
    case("softmax-features", spec([3, 4], "flatten", {"softmax": 1})),
    # ------------------------------------------------------------------ pools
    case("maxpool2d-ceil-dilation", spec([3, 9, 10], {"maxpool": {
        "kernel": 3, "stride": 2, "padding": 1, "dilation": 2, "ceil_mode": True}})),
    case("maxpool1d-ceil-last-window-dropped", spec([2, 5], {"maxpool": {"kernel": 2, "stride": 2, "padding": 1, "ceil_mode": True}})),
    case("maxpool2d-default-stride", spec([3, 9, 10], {"maxpool": 2})),
    case("maxpool3d-per-dim", spec([2, 5, 6, 7], {"maxpool": {"kernel": [1, 2, 3], "stride": [1, 2, 2], "padding": [0, 1, 1]}})),
    case("avgpool2d-ceil-no-pad-count", spec([3, 9, 10], {"avgpool": {
        "kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True, "count_include_pad": False}})),
    case("avgpool1d", spec([2, 9], {"avgpool": 3})),
    case("avgpool1d-ceil-last-window-dropped", spec([2, 5], {"avgpool": {"kernel": 2, "stride": 2, "padding": 1, "ceil_mode": True}})),
    case("avgpool3d-per-dim", spec([2, 4, 6, 8], {"avgpool": {"kernel": [2, 3, 2], "stride": [1, 2, 2]}})),
    case("adaptive_avgpool-2d", spec([3, 7, 9], {"adaptive_avgpool": [3, 4]})),
    case("adaptive_avgpool-1d", spec([3, 7], {"adaptive_avgpool": 5})),
    case("adaptive_avgpool-3d", spec([2, 4, 5, 6], {"adaptive_avgpool": {"size": 2}})),
    case("adaptive_maxpool-2d-upsizing", spec([3, 3, 5], {"adaptive_maxpool": [4, 2]})),
    case("adaptive_maxpool-3d", spec([2, 4, 5, 6], {"adaptive_maxpool": [1, 2, 3]})),
    case("global_avgpool-1d", spec([3, 7], "global_avgpool")),
    case("global_avgpool-2d", spec([3, 7, 5], "global_avgpool", "flatten", {"linear": 2})),
    case("global_avgpool-3d", spec([3, 2, 3, 4], "global_avgpool")),
    # ------------------------------------------------------------------ upsample
    case("upsample-nearest-scale", spec([3, 4, 5], {"upsample": 2})),
    case("upsample-nearest-scale-per-dim", spec([3, 4, 5], {"upsample": {"scale": [2, 3]}})),
    case("upsample-nearest-downscale", spec([3, 9, 7], {"upsample": 0.5})),
    case("upsample-nearest-size-3d", spec([2, 2, 3, 4], {"upsample": {"size": [3, 5, 7]}})),
    case("upsample-bilinear-scale-align", spec([3, 5, 5], {"upsample": {"scale": 1.5, "mode": "bilinear", "align_corners": True}})),
    case("upsample-bilinear-size", spec([3, 4, 5], {"upsample": {"size": [7, 9], "mode": "bilinear", "align_corners": False}})),
    case("upsample-bilinear-size-int", spec([3, 4, 5], {"upsample": {"size": 6, "mode": "bilinear"}})),
    case("upsample-linear", spec([3, 5], {"upsample": {"scale": 2.5, "mode": "linear"}})),
    case("upsample-bicubic", spec([3, 4, 4], {"upsample": {"size": [5, 6], "mode": "bicubic", "align_corners": True}})),
    case("upsample-trilinear", spec([2, 2, 3, 4], {"upsample": {"scale": 2, "mode": "trilinear"}})),
    case("frozen-batchnorm-2d", spec([3, 4, 5], {"conv": {"out": 4, "kernel": 3}}, {"frozen_batchnorm": {"eps": 0.001}})),
    case("frozen-batchnorm-3d", spec([2, 3, 4, 5], "frozen_batchnorm")),
    case("upsample-size-of-input", spec([3, 5, 7], {"conv": {"out": 4, "kernel": 3, "stride": 2}},
                                        {"upsample": {"size_of": "input", "mode": "bilinear", "align_corners": False}})),
    case("upsample-size-of-layer-3d", spec([2, 4, 6, 9], {"conv": {"name": "a", "out": 3, "kernel": 1}}, {"maxpool": 2},
                                           {"upsample": {"size_of": "a"}})),
    # ------------------------------------------------------------------ misc
    case("dropout", spec([3, 4, 4], "dropout", {"dropout": 0.3}, {"dropout": {"p": 0.0}})),
    case("dropout-all", spec([3, 4], {"dropout": 1.0})),
    case("dropout-channels-1d", spec([4, 6], {"dropout": {"p": 0.5, "channels": True}})),
    case("dropout-channels-2d", spec([4, 3, 3], {"dropout": {"channels": True}}, {"dropout": {"p": 0.0, "channels": True}})),
    case("dropout-channels-3d", spec([4, 2, 2, 2], {"dropout": {"p": 0.2, "channels": True}})),
    case("stochastic_depth-row-batch", spec([3, 4, 4], {"stochastic_depth": 0.5}, {"stochastic_depth": {"p": 0.3, "mode": "batch"}})),
    case("stochastic_depth-1d-never-always", spec([3, 5], {"stochastic_depth": 0.0}, {"stochastic_depth": {"p": 1.0, "mode": "batch"}},
                                                  {"stochastic_depth": 1})),
    case("stochastic_depth-features-3d", spec([2, 2, 3, 3], {"stochastic_depth": {"name": "drop", "p": 0.4}}, "flatten",
                                              {"stochastic_depth": {"p": 0.6, "mode": "batch"}})),
    case("residual-body-ending-in-stochastic_depth", spec([4, 6, 6], {"residual": {"shortcut": "identity", "activation": "identity", "body": [
        {"conv": {"out": 4, "kernel": 3, "padding": 1, "bias": False}}, "batchnorm",
        {"stochastic_depth": {"name": "stochastic_depth", "p": 0.25}}]}})),
    # ------------------------------------------------------------------ ConvNeXt's parts
    case("permute-channels-last-and-back", spec([3, 4, 5], {"permute": [0, 2, 3, 1]}, {"permute": {"dims": [0, 3, 1, 2]}})),
    case("permute-1d-3d", spec([2, 3, 4, 5], {"permute": [0, 4, 1, 3, 2]}, "flatten", {"permute": [0, 1]})),
    case("linear-last_dim-channels-last", spec([3, 4, 5], {"permute": [0, 2, 3, 1]},
                                               {"linear": {"out": 7, "last_dim": True, "bias": False}},
                                               {"linear": {"out": 2, "last_dim": True}}, {"permute": [0, 3, 1, 2]})),
    case("linear-last_dim-flat", spec([6, 1], "flatten", {"linear": {"out": 4, "last_dim": True}})),
    case("layernorm2d", spec([3, 4, 5], {"layernorm2d": {"eps": 1e-6}}, {"layernorm2d": {"bias": False}},
                             {"layernorm2d": {"affine": False}})),
    case("layer_scale", spec([3, 4, 5], {"layer_scale": {"name": "gamma", "init": 0.5}}, "layer_scale")),
    case("layer_scale-1d-flat-3d", spec([2, 3, 4, 3], {"layer_scale": 2.0}, "flatten", {"layer_scale": -1})),
    case("layer_scale-flat", spec([3, 4, 5], {"conv": {"out": 4, "kernel": 1}}, {"l2norm": {"eps": 1e-6}}, {"layer_scale": {"name": "scale_weight", "init": 20.0, "flat": True}})),
    case("l2norm-flat", spec([6, 4], "flatten", "l2norm", {"layer_scale": {"init": 2.0, "flat": True}})),
    case("convnext-block", spec([4, 6, 6], {"residual": {"shortcut": "identity", "activation": None, "body": [
        {"group": {"name": "block", "layers": [
            {"conv": {"out": 4, "kernel": 7, "padding": 3, "groups": 4}}, {"permute": [0, 2, 3, 1]},
            {"layernorm": {"dims": 1, "eps": 1e-6}}, {"linear": {"out": 16, "last_dim": True}}, "gelu",
            {"linear": {"out": 4, "last_dim": True}}, {"permute": [0, 3, 1, 2]}]}},
        {"layer_scale": {"name": "layer_scale", "init": 0.1}},
        {"stochastic_depth": {"name": "stochastic_depth", "p": 0.2}}]}})),
    case("layer_scale-in-a-sequence-with-from", spec([3, 4, 4], {"group": {"name": "g", "layers": [
        {"conv": {"name": "c", "out": 3, "kernel": 1}}, {"layer_scale": {"name": "s"}},
        {"identity": {"from": ["c", "s"], "merge": "add"}}]}})),
    case("residual-shortcut_first", spec([4, 8, 8], {"residual": {"shortcut_name": "proj", "shortcut_first": True, "body": [
        {"conv": {"name": "f", "out": 6, "kernel": 3, "stride": 2, "padding": 1}}]}})),
    case("names-with-hyphens-from-templates", yaml_spec("""
        archspec: 1
        name: hyphen-names
        input: [3, 6, 6]
        layers:
          - group:
              name: stage-1
              layers:
                - conv: {name: "conv{i}-a", out: 4, kernel: 1, repeat: 2}
                - relu: {name: act-1}
                - identity: {name: sum-x, from: [conv0-a, act-1], merge: add}
        """)),
    # ------------------------------------------------------------------ padding and rearranging
    case("zero_pad-1d", spec([3, 5], {"zero_pad": 2}, {"zero_pad": {"padding": 0, "after": 3}})),
    case("zero_pad-2d-per-dim", spec([3, 4, 5], {"zero_pad": [1, 0]}, {"zero_pad": {"padding": [0, 2], "after": [1, 0]}})),
    case("zero_pad-2d-tf-same", spec([3, 6, 6], {"zero_pad": {"padding": 0, "after": 1}}, {"conv": {"out": 4, "kernel": 2, "stride": 2}})),
    case("zero_pad-3d", spec([2, 2, 3, 4], {"zero_pad": 1}, {"zero_pad": {"padding": [1, 0, 2], "after": [0, 3, 1]}})),
    case("pixel_shuffle", spec([8, 3, 5], {"pixel_shuffle": 2}, {"conv": {"out": 18, "kernel": 1}}, {"pixel_shuffle": {"factor": 3}})),
    case("pixel_unshuffle", spec([2, 6, 12], {"pixel_unshuffle": 2}, {"pixel_unshuffle": {"factor": 3}})),
    case("pixel_unshuffle-then-shuffle", spec([3, 4, 6], {"pixel_unshuffle": 2}, {"conv": {"out": 12, "kernel": 3, "padding": 1}},
                                               {"pixel_shuffle": 2})),
    case("channel_shuffle-2d", spec([6, 3, 4], {"channel_shuffle": 2}, {"channel_shuffle": {"groups": 3}})),
    case("channel_shuffle-1d-3d", spec([4, 2, 3, 2], {"channel_shuffle": 4}, {"conv": {"out": 6, "kernel": 1}}, {"channel_shuffle": 1})),
    case("channel_shuffle-1d", spec([8, 5], {"channel_shuffle": {"name": "shuffle", "groups": 2}})),
    case("flatten-linear", spec([3, 4, 5], "flatten", {"linear": {"out": 7, "bias": False}}, {"linear": 3})),
    case("flatten-3d-and-flat", spec([2, 2, 3, 4], "flatten", "flatten", {"linear": 1})),
    case("identity", spec([3, 4], "identity", {"identity": {"name": "skip"}})),
    case("normalize-2d", spec([3, 4, 4], {"normalize": {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]}})),
    case("normalize-1d", spec([2, 6], {"normalize": {"mean": [1, -1], "std": [2, 0.5]}})),
    case("normalize-features", spec([2, 3], "flatten", {"normalize": {"mean": [0, 1, 2, 3, 4, 5], "std": [1, 2, 3, 4, 5, 6]}})),
    # ------------------------------------------------------------------ group
    case("group-nested-named", spec([3, 8, 8], {"group": {"name": "features", "layers": [
        {"conv": {"name": "conv", "out": 4, "kernel": 3}},
        {"group": [{"batchnorm": {"name": "bn"}}, "relu"]},
        {"maxpool": {"name": "pool", "kernel": 2}},
    ]}}, "flatten", {"linear": {"name": "fc", "out": 2}})),
    case("group-yaml", yaml_spec("""
        archspec: 1
        name: group_yaml
        input: [3, 6]
        layers:
          - group: [conv: {out: 4, kernel: 3}, relu]
          - group:
              name: head
              layers: [flatten, linear: 2]
        """)),
    # ------------------------------------------------------------------ residual
    case("residual-auto-projection", spec([4, 8, 8], {"residual": {"body": [
        {"conv": {"out": 8, "kernel": 3, "stride": 2, "padding": 1}}, "batchnorm"]}})),
    case("residual-auto-projection-per-dim-stride", spec([4, 8, 9], {"residual": {"body": [
        {"conv": {"out": 6, "kernel": 3, "stride": [1, 3], "padding": 1}}]}})),
    case("residual-auto-projection-channels-only-1d", spec([4, 9], {"residual": {"shortcut_name": "proj", "body": [
        {"conv": {"out": 6, "kernel": 3, "padding": 1}}]}})),
    case("residual-auto-projection-3d", spec([2, 4, 5, 6], {"residual": {"body": [
        {"conv": {"out": 4, "kernel": 3, "stride": 2, "padding": 1}}]}})),
    case("residual-auto-projection-pool-in-body", spec([4, 8, 8], {"residual": {"body": [
        {"conv": {"out": 6, "kernel": 3, "padding": 1}}, {"maxpool": 2}, {"conv": {"out": 6, "kernel": 3, "stride": 2}}]}})),
    case("residual-auto-same-shape", spec([4, 6, 6], {"residual": {"shortcut": "auto", "body": [
        {"conv": {"out": 4, "kernel": 3, "padding": 1}}, "batchnorm", "relu", {"conv": {"out": 4, "kernel": 3, "padding": 1}}]}})),
    case("residual-identity-leaky", spec([4, 6, 6], {"residual": {"shortcut": "identity", "activation": "leaky_relu",
                                                                 "body": [{"conv": {"out": 4, "kernel": 3, "padding": "same"}}]}})),
    case("residual-identity-features", spec([3, 4], "flatten", {"residual": {"shortcut": "identity", "activation": "tanh",
                                                                             "body": [{"linear": 12}, "gelu"]}})),
    case("residual-explicit-no-activation", spec([4, 8, 8], {"residual": {
        "name": "blk", "shortcut_name": "extra", "activation": None,
        "body": [{"conv": {"name": "conv1", "out": 8, "kernel": 3, "stride": 2, "padding": 1}}, {"batchnorm": {"name": "bn1"}}],
        "shortcut": [{"conv": {"out": 8, "kernel": 1, "stride": 2}}, "batchnorm"]}})),
    case("residual-explicit-features", spec([3, 4], "flatten", {"residual": {
        "activation": "silu", "body": [{"linear": 5}], "shortcut": [{"linear": {"out": 5, "bias": False}}]}})),
    case("residual-explicit-same-shape", spec([4, 5], {"residual": {
        "activation": "sigmoid", "body": ["identity"], "shortcut": [{"conv": {"out": 4, "kernel": 1}}]}})),
    case("residual-activations", spec([4, 5], *[
        {"residual": {"activation": act, "body": [{"conv": {"out": 4, "kernel": 3, "padding": 1}}]}}
        for act in RESIDUAL_ACTIVATIONS])),
    case("residual-nested", spec([4, 6, 6], {"residual": {"name": "outer", "body": [
        {"residual": {"name": "inner", "body": [{"conv": {"out": 8, "kernel": 1}}]}},
        {"group": {"name": "g", "layers": [{"conv": {"out": 8, "kernel": 3, "padding": 1}}]}}]}})),
    case("residual-yaml", yaml_spec("""
        archspec: 1
        name: residual_yaml
        input: [3, 8, 8]
        layers:
          - residual:
              shortcut_name: extra
              activation: null
              body:
                - conv: {out: 6, kernel: 3, padding: 1}
                - batchnorm
              shortcut:
                - conv: {out: 6, kernel: 1}
        """)),
    # ------------------------------------------------------------------ built-in blocks
    case("basic_block-identity", spec([8, 6, 6], {"basic_block": 8})),
    case("basic_block-downsample", spec([4, 7, 7], {"basic_block": {"out": 8, "stride": 2}}, {"basic_block": 8})),
    case("basic_block-stride-on-size-1", spec([4, 1, 1], {"basic_block": {"out": 4, "stride": 2}})),
    case("basic_block-1d", spec([4, 9], {"basic_block": {"out": 6, "stride": 3}})),
    case("basic_block-3d", spec([2, 4, 5, 5], {"basic_block": {"out": 4, "stride": 2}})),
    case("bottleneck-projection", spec([8, 6, 6], {"bottleneck": 4})),
    case("bottleneck-identity", spec([16, 5, 5], {"bottleneck": 4})),
    case("bottleneck-groups-stride-out", spec([8, 7, 7], {"bottleneck": {"width": 8, "out": 12, "stride": 2, "groups": 4}})),
    case("bottleneck-1d", spec([4, 9], {"bottleneck": {"width": 2, "stride": 2}})),
    case("bottleneck-dilated-3d", spec([8, 5, 6, 7], {"bottleneck": {"width": 4, "out": 16, "dilation": 2}})),
    case("chunk-halves-joined", yaml_spec("""
        archspec: 1
        name: chunks
        input: [6, 5, 5]
        layers:
          - chunk: {name: x1, parts: 2, index: 0}
          - chunk: {name: x2, from: input, parts: 2, index: 1}
          - conv: {name: branch, out: 3, kernel: 1}
          - identity: {name: joined, from: [x1, branch], merge: concat}
          - channel_shuffle: 2
    """)),
    case("chunk-1d-last-of-three", spec([9, 4], {"chunk": {"parts": 3, "index": 2}}, "flatten", {"linear": 2})),
    case("inverted-residual-skip", spec([8, 6, 6], {"inverted_residual": 8})),
    case("inverted-residual-no-expansion", spec([8, 6, 6], {"inverted_residual": {"out": 8, "expand_ratio": 1}})),
    case("inverted-residual-stride-widen", spec([4, 7, 7], {"inverted_residual": {"out": 6, "stride": 2, "expand_ratio": 2.5}})),
    case("inverted-residual-dilated", spec([8, 9, 9], {"inverted_residual": {"out": 8, "expand_ratio": 2, "dilation": 3}})),
    case("inverted-residual-1d-chain", spec([4, 9], {"inverted_residual": 4}, {"inverted_residual": {"out": 4, "stride": 2}})),
    case("dense_block-plain", spec([4, 5, 5], {"dense_block": {"num_layers": 3, "growth": 2}})),
    case("dense_block-bn_size-dropout-bias", spec([4, 5, 5], {"dense_block": {
        "num_layers": 2, "growth": 3, "bn_size": 2, "dropout": 0.2, "bias": True}})),
    case("dense_block-dropout-1d", spec([3, 6], {"dense_block": {"num_layers": 2, "growth": 2, "dropout": 0.5}})),
    case("dense_block-3d", spec([2, 3, 4, 4], {"dense_block": {"num_layers": 2, "growth": 2, "bn_size": 1}})),
    case("activations-inplace", spec([3, 4, 4], *[{k: {"inplace": False}} for k in INPLACE],
         *[layer for k in INPLACE for layer in ({"conv": {"out": 3, "kernel": 1}}, {k: {"inplace": True}})])),
    case("dense_block-memory_efficient", spec([4, 5, 5], {"dense_block": {
        "num_layers": 2, "growth": 2, "bn_size": 2, "memory_efficient": True}})),
    case("squeeze_excite-squeeze", spec([8, 5, 6], {"squeeze_excite": 3})),
    case("squeeze_excite-ratio-silu-hardsigmoid", spec([8, 5, 5], {"squeeze_excite": {
        "ratio": 0.25, "activation": "silu", "gate": "hardsigmoid"}})),
    case("squeeze_excite-ratio-floor-1d", spec([3, 7], {"squeeze_excite": {"ratio": 0.1, "activation": "gelu"}})),
    case("squeeze_excite-3d-in-residual", spec([4, 3, 4, 4], {"residual": {"body": [
        {"conv": {"out": 4, "kernel": 3, "padding": 1}}, {"squeeze_excite": {"squeeze": 2, "gate": "hardswish"}}]}})),
    case("transition-out", spec([6, 6, 7], {"transition": 4})),
    case("transition-compression-bias", spec([6, 6, 6], {"transition": {"compression": 0.5, "bias": True}})),
    case("transition-compression-odd", spec([7, 5, 4], {"transition": {"compression": 0.3}})),
    case("transition-1d", spec([4, 9], {"transition": {"out": 4, "bias": True}})),
    case("transition-3d", spec([4, 4, 4, 5], {"transition": {"compression": 1.0}})),
    case("densenet-yaml", yaml_spec("""
        archspec: 1
        name: tiny_densenet
        input: [3, 16, 16]
        layers:
          - conv: {out: 8, kernel: 3, padding: 1, bias: false}
          - dense_block: {name: block1, num_layers: 2, growth: 4, bn_size: 2}
          - transition: {name: trans1, compression: 0.5}
          - dense_block: {num_layers: 2, growth: 4, dropout: 0.1}
          - transition: 6
          - batchnorm
          - relu
          - global_avgpool
          - flatten
          - linear: 3
        """)),
    case("resnet-yaml", yaml_spec("""
        archspec: 1
        name: tiny_resnet
        input: [3, 16, 16]
        layers:
          - conv: {name: conv1, out: 8, kernel: 3, stride: 2, padding: 1, bias: false}
          - batchnorm: {name: bn1}
          - relu
          - group:
              name: layer1
              layers: [basic_block: 8, basic_block: {out: 16, stride: 2}]
          - group:
              name: layer2
              layers: [bottleneck: {width: 4, stride: 2, groups: 2}, bottleneck: 4]
          - global_avgpool: {name: avgpool}
          - flatten
          - linear: {name: fc, out: 5}
        """)),
    # ------------------------------------------------------------------ merges
    case("merge-mul-squeeze-excite", spec([8, 6, 6],
        {"conv": {"name": "features", "out": 8, "kernel": 3, "padding": 1}}, {"global_avgpool": {"name": "pool"}},
        {"conv": {"name": "fc1", "out": 2, "kernel": 1}}, "relu", {"conv": {"name": "fc2", "out": 8, "kernel": 1}},
        {"sigmoid": {"name": "gate"}}, {"identity": {"name": "scaled", "from": ["features", "gate"], "merge": "mul"}})),
    case("merge-add-concat-mul-3-inputs", spec([4, 5],
        {"conv": {"name": "a", "out": 4, "kernel": 1}}, {"conv": {"name": "b", "out": 4, "kernel": 1}},
        {"identity": {"name": "sum", "from": ["a", "b", "a"], "merge": "add"}},
        {"identity": {"name": "cat", "from": ["a", "b", "sum"]}},
        {"conv": {"name": "gate", "out": 1, "kernel": 1}},
        {"identity": {"name": "scaled", "from": ["gate", "sum", "a"], "merge": "mul"}})),
    # ------------------------------------------------------------------ layer names that once collided
    # with attributes of archspec's own torch modules (SpecModel, Residual)
    case("name-spec_name", spec([3, 4], {"relu": {"name": "spec_name"}})),
    case("residual-body-name-activation", spec([3, 4], {"residual": {"body": [{"relu": {"name": "activation"}}]}})),
    case("residual-body-name-body_names", spec([3, 4], {"residual": {"body": [{"relu": {"name": "body_names"}}]}})),
    case("residual-shortcut_name-activation", spec([3, 4], {"residual": {
        "shortcut_name": "activation", "activation": None, "body": [{"conv": {"out": 5, "kernel": 1}}]}})),
]
# fmt: on


# ---------------------------------------------------------------- helpers


def user_layers(source):
    """Every layer the spec writes (not the ops built-in blocks expand into), as schema objects."""
    top = schema.validate(expand(read(source)))

    def visit(layers):
        for layer in layers:
            yield layer
            for field in schema.CONTAINER_FIELDS:
                value = getattr(layer, field, None)
                if isinstance(value, list):
                    yield from visit(value)

    return list(visit(top.layers))


def _shape(value) -> tuple[int, ...]:
    assert isinstance(value, torch.Tensor), f"expected a tensor, got {type(value).__name__}"
    return tuple(value.shape[1:])


def run_and_record(module: torch.nn.Module, batch: torch.Tensor):
    """(output, {qualified name: [(per-sample input shape, per-sample output shape), ...]})."""
    seen: dict[str, list] = {}

    def hook(name):
        def record(_module, inputs, output):  # and what a resize or a capturing block is handed
            assert inputs, f"{name!r} got no input"
            if isinstance(output, tuple):  # a sequence handing out inner outputs besides its own
                output = output[0]
            out = None if isinstance(output, dict) else _shape(output)  # the model's named outputs: checked apart
            seen.setdefault(name, []).append((_shape(inputs[0]), out, [_shape(t) for t in inputs[1:]]))

        return record

    handles = [sub.register_forward_hook(hook(name)) for name, sub in module.named_modules()]
    try:
        with torch.no_grad():
            out = module(batch)
    finally:
        for handle in handles:
            handle.remove()
    return out, seen


def check(source):
    model = analyze(source)
    module = compile_spec(source)
    nodes = {node.path: node for node in walk(model.body)}
    modules = dict(module.named_modules())

    # The IR and the module tree correspond one to one, by qualified path ("" is the model itself);
    # a bare parameter (layer_scale) is a parameter of its parent module at its path instead.
    assert len(nodes) == len(list(walk(model.body))), "two IR nodes share a path"
    bare = {path for path, node in nodes.items() if isinstance(node, Op) and registry.layer_kind(node.kind).parameter}
    parameters = dict(module.named_parameters())
    for path in bare:
        assert path in parameters and parameters[path].numel() == nodes.pop(path).params, path
    assert set(modules) == set(nodes)
    assert tuple(module.input_shape) == model.input_shape

    # Parameter counts: the whole model, then every node.
    assert sum(p.numel() for p in module.parameters()) == model.body.params
    for path, node in nodes.items():
        real = sum(p.numel() for p in modules[path].parameters())
        assert real == node.params, (
            f"{path or '<model>'} ({node.kind}): torch has {real} parameters, IR says {node.params}"
        )

    for mode, batch_size in (("train", TRAIN_BATCH), ("eval", EVAL_BATCH)):
        module.train(mode == "train")
        torch.manual_seed(0)
        batch = torch.randn(batch_size, *model.input_shape)
        out, seen = run_and_record(module, batch)
        if model.outputs:  # an ordered dict: each named output's shape is its layer's
            shapes = {node.path: node.out_shape for node in walk(model.body)}
            static = [(name, (batch_size, *shapes[tensor_path(model.body, ref)])) for name, ref in model.outputs]
            assert [(name, tuple(tensor.shape)) for name, tensor in out.items()] == static, mode
            out = torch.cat([tensor.reshape(-1) for tensor in out.values()])
        assert tuple(out.shape) == (batch_size, *model.body.out_shape) or model.outputs, mode
        assert torch.isfinite(out).all(), f"{mode}: non-finite output"
        assert set(seen) == set(nodes), f"{mode}: modules that never ran: {sorted(set(nodes) - set(seen))}"
        for path, calls in seen.items():
            node = nodes[path]
            where = f"{mode}: {path or '<model>'} ({node.kind})"
            assert len(calls) == 1, f"{where} ran {len(calls)} times"
            real_in, real_out, real_like = calls[0]
            assert real_in == node.in_shape, f"{where}: real input {real_in}, static {node.in_shape}"
            if isinstance(node, Op):
                assert real_like == ([node.like_shape] if node.like else []), where
            else:
                assert len(real_like) == len(node.captures), where
            if real_out is not None:
                assert real_out == node.out_shape, f"{where}: real output {real_out}, static {node.out_shape}"
    return model, module


# ---------------------------------------------------------------- tests


@pytest.mark.parametrize("source", CASES)
def test_static_shapes_and_params_equal_torch(source):
    check(source)


def _passing_sources():
    return [p.values[0] for p in CASES]


def test_every_kind_has_a_case():
    covered = {layer.kind for source in _passing_sources() for layer in user_layers(source)}
    missing = sorted(set(registry.KINDS) - covered)
    assert not missing, f"layer kinds with no (passing) case in CASES: {missing}"


def test_every_field_is_exercised():
    """Every field of every kind is set to a value other than its default by some passing case."""
    exercised: set[tuple[str, str]] = set()
    for source in _passing_sources():
        for layer in user_layers(source):
            for field in declared_fields(type(layer)):
                if field.required or getattr(layer, field.name) != field.default:
                    exercised.add((layer.kind, field.name))
    every = {(kind, field.name) for kind, entry in registry.KINDS.items() for field in declared_fields(entry.fields)}
    # The fields every kind shares (name, from, merge) are covered by test_graph.py and the specs.
    expected = {(kind, field) for kind, field in every if field not in ("kind", *LAYER_FIELDS)}
    missing = sorted(expected - exercised)
    assert not missing, f"(kind, field) pairs never given a non-default value in CASES: {missing}"


def test_case_ids_are_unique():
    ids = [p.id for p in CASES]
    assert len(ids) == len(set(ids))


# ---------------------------------------------------------------- numeric checks


@pytest.mark.parametrize(
    ("input_shape", "mean", "std", "flatten"),
    [
        ([3, 4, 5], [0.5, -0.4, 2.0], [0.2, 1.5, 3.0], False),
        ([2, 7], [1.0, -1.0], [2.0, 0.5], False),
        ([2, 2, 3, 4], [0.1, 0.2], [0.3, 0.4], False),
        ([2, 3], [0, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 6], True),
    ],
    ids=["2d", "1d", "3d", "features"],
)
def test_normalize_is_per_channel_standardisation(input_shape, mean, std, flatten):
    layers = (["flatten"] if flatten else []) + [{"normalize": {"mean": mean, "std": std}}]
    source = spec(input_shape, *layers)
    _, module = check(source)
    module.eval()
    torch.manual_seed(1)
    x = torch.randn(TRAIN_BATCH, *input_shape)
    if flatten:
        x = x.flatten(1)
    per_channel = (1, len(mean)) + (1,) * (x.dim() - 2)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(per_channel)
    std_t = torch.tensor(std, dtype=torch.float32).view(per_channel)
    expected = (x - mean_t) / std_t
    got = module(x.view(TRAIN_BATCH, *input_shape)) if flatten else module(x)
    torch.testing.assert_close(got, expected)
    # element by element, without broadcasting
    for c in range(len(mean)):
        torch.testing.assert_close(got[:, c], (x[:, c] - mean[c]) / std[c])
    assert sum(p.numel() for p in module.parameters()) == 0


def test_residual_adds_the_shortcut_then_the_activation():
    body = [{"conv": {"out": 4, "kernel": 3, "padding": 1}}]
    identity = compile_spec(spec([4, 6], {"residual": {"shortcut": "identity", "activation": None, "body": body}}))
    identity.eval()
    relu = compile_spec(spec([4, 6], {"residual": {"shortcut": "identity", "body": body}})).eval()
    relu.load_state_dict(identity.state_dict())
    x = torch.randn(2, 4, 6)
    with torch.no_grad():
        plain = identity(x)
        torch.testing.assert_close(plain, identity[0].get_submodule("0")(x) + x)
        torch.testing.assert_close(relu(x), torch.relu(plain))

    shortcut = [{"conv": {"out": 4, "kernel": 1}}]
    explicit = compile_spec(spec([4, 6], {"residual": {"activation": None, "body": body, "shortcut": shortcut}}))
    explicit.eval()
    block = explicit[0]
    with torch.no_grad():
        torch.testing.assert_close(explicit(x), block.get_submodule("0")(x) + block.get_submodule("shortcut.0")(x))


def test_dense_block_concatenates_its_input_first():
    module = compile_spec(spec([3, 5, 5], {"dense_block": {"num_layers": 2, "growth": 2}})).eval()
    x = torch.randn(2, 3, 5, 5)
    with torch.no_grad():
        out = module(x)
    assert out.shape == (2, 3 + 2 * 2, 5, 5)
    torch.testing.assert_close(out[:, :3], x)


def test_activation_cases_cover_every_residual_activation():
    """Every choice of residual's `activation` is run by the residual-activations case."""
    choices = set(RESIDUAL_ACTIVATIONS)
    source = next(p.values[0] for p in CASES if p.id == "residual-activations")
    assert {layer.activation for layer in user_layers(source) if layer.kind == "residual"} == choices


@pytest.mark.parametrize("layer, shape", [
    ({"maxpool": {"kernel": 3, "padding": 2, "dilation": 2}}, [1, 5, 5]),  # torch: pad <= kernel // 2
    ({"avgpool": {"kernel": 2, "padding": 1}}, [1, 4, 4, 1]),  # avg_pool3d: unpadded size >= kernel
    ({"avgpool": {"kernel": 2, "ceil_mode": True}}, [1, 3, 3, 1]),
])  # fmt: skip
def test_pooling_that_torch_rejects_is_rejected(layer, shape):
    with pytest.raises(SpecError) as exc:
        analyze(spec(shape, layer))
    assert [d.code for d in exc.value.diagnostics] == ["bad-arg"]


# ---------------------------------------------------------------- errors of the newer kinds

NEW_KIND_ERRORS = {  # input ([C]: flattened), the wrong layer, code, what the message must say
    "pixel_shuffle-channels": ([3, 4, 4], "pixel_shuffle: 2", "channel-mismatch",
                               "the 3 input channels are not divisible by factor^2 = 2^2 = 4"),
    "pixel_shuffle-1d": ([8, 4], "pixel_shuffle: 2", "rank", "needs (channels, H, W)"),
    "pixel_shuffle-3d": ([8, 2, 2, 2], "pixel_shuffle: 2", "rank", "the input has 3 spatial dims"),
    "pixel_unshuffle-H": ([3, 5, 4], "pixel_unshuffle: 2", "bad-arg", "input H = 5 is not divisible by factor 2"),
    "pixel_unshuffle-W": ([3, 6, 7], "pixel_unshuffle: {factor: 3}", "bad-arg", "input W = 7 is not divisible by factor 3"),
    "channel_shuffle-groups": ([6, 4, 4], "channel_shuffle: 4", "channel-mismatch",
                               "groups=4 does not divide the 6 input channels"),
    "channel_shuffle-flat": ([6], "channel_shuffle: 2", "rank", "channel_shuffle needs (channels, 1 to 3 spatial dims)"),
    "instance_norm-one-position": ([3, 1, 1], "instance_norm", "bad-arg",
                                   "needs more than one spatial position per channel; the input has 2 spatial dims of size 1"),
    "instance_norm-flat": ([3], "instance_norm: {affine: true}", "rank", "instance_norm needs (channels"),
    "dropout-channels-flat": ([3], "dropout: {channels: true}", "rank", "channel dropout (channels: true) needs"),
    "zero_pad-flat": ([3], "zero_pad: 1", "rank", "zero_pad needs (channels"),
    "zero_pad-values": ([3, 4, 4], "zero_pad: [1, 2, 3]", "rank", "padding has 3 values but the input has 2 spatial dims"),
    "zero_pad-after-values": ([3, 4], "zero_pad: {padding: 1, after: [1, 2]}", "rank", "after has 2 values"),
    "zero_pad-negative": ([3, 4, 4], "zero_pad: -1", "bad-value", "expected an integer >= 0"),
    "hardtanh-order": ([3, 4], "hardtanh: {min: 1, max: 1}", "bad-value", "max (1) must be greater than min (1)"),
    "softplus-beta": ([3, 4], "softplus: 0", "bad-value", "expected a number > 0"),
    "prelu-inplace": ([3, 4], "prelu: {inplace: true}", "unknown-field", '"inplace"'),
    "relu6-inplace-on-input": ([3, 4], "relu6: {inplace: true}", "bad-value", "it is the model's input"),
    "dropout-channel-typo": ([3, 4], "dropout: {channel: true}", "unknown-field", 'did you mean "channels"'),
    "permute-rank": ([3, 4, 4], "permute: [0, 2, 1]", "rank", "dims [0, 2, 1] order 3 dims, but the batched input (B, 3, 4, 4) has 4"),
    "permute-batch-first": ([3, 4, 4], "permute: [1, 0, 2, 3]", "bad-value", "expected 0 first"),
    "permute-repeated": ([3, 4, 4], "permute: [0, 1, 1, 2]", "bad-value", "expected 0 first, then 1 to 3 in any order"),
    "layernorm2d-flat": ([3], "layernorm2d", "rank", "layernorm2d normalises the channels of a (C, H, W) input, not a rank-1"),
    "layernorm2d-1d": ([3, 4], "layernorm2d", "rank", "not a rank-2 one"),
    "linear-unflat": ([3, 4], "linear: 5", "needs-flatten", "put a flatten before it (it would give 12 features), or set last_dim: true"),
    "layer_scale-init": ([3, 4], "layer_scale: {init: yes}", "bad-value", "expected a number"),
    "squeeze_excite-flat": ([3], "squeeze_excite: 2", "rank", "squeeze_excite needs (channels, 1 to 3 spatial dims)"),
    "squeeze_excite-both": ([3, 4], "squeeze_excite: {squeeze: 2, ratio: 0.5}", "bad-value",
                            "give exactly one of squeeze and ratio"),
    "squeeze_excite-gate": ([3, 4], "squeeze_excite: {squeeze: 2, gate: softmax}", "bad-value", "sigmoid"),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(NEW_KIND_ERRORS))
def test_newer_kinds_report_located_errors_with_the_numbers(name):
    input_shape, layer, code, message = NEW_KIND_ERRORS[name]
    flat = len(input_shape) == 1  # a flat input: the spec flattens (C, 1) first
    before = "  - flatten\n" if flat else ""
    shape = [*input_shape, 1] if flat else input_shape
    text = f"archspec: 1\nname: broken\ninput: {shape}\nlayers:\n{before}  - {layer}\n  - identity\n"
    with pytest.raises(SpecError) as raised:
        analyze(text)
    (diagnostic,) = raised.value.diagnostics
    assert diagnostic.code == code and message in diagnostic.message, diagnostic.format()
    assert diagnostic.loc is not None and diagnostic.loc.line == 5 + flat, diagnostic.format()


def test_newer_kinds_keep_checking_the_layers_after_a_refused_one():
    """Where PyTorch refuses a layer whose output is still known, the layers after it are checked too."""
    layers = "  - pixel_unshuffle: 2\n  - conv: {out: 2, kernel: 5}\n"  # H 5 is odd; then 5 rows of kernel on 2
    text = f"archspec: 1\nname: broken\ninput: [3, 5, 6]\nlayers:\n{layers}"
    with pytest.raises(SpecError) as raised:
        analyze(text)
    assert [(d.code, d.loc.line) for d in raised.value.diagnostics] == [("bad-arg", 5), ("output-size", 6)]


@pytest.mark.parametrize(
    ("layer", "module", "arguments"),
    [
        ({"prelu": {"per_channel": True, "init": 0.1}}, torch.nn.PReLU, {"num_parameters": 3, "init": 0.1}),
        ("prelu", torch.nn.PReLU, {"num_parameters": 1}),
        ({"hardtanh": {"min": 0, "max": 6}}, torch.nn.Hardtanh, {"min_val": 0.0, "max_val": 6.0}),
        ({"zero_pad": {"padding": [1, 0], "after": [2, 3]}}, torch.nn.ZeroPad2d, {"padding": (0, 3, 1, 2)}),
        ({"dropout": {"p": 0.2, "channels": True}}, torch.nn.Dropout2d, {"p": 0.2}),
        ({"instance_norm": {"affine": True}}, torch.nn.InstanceNorm2d, {"num_features": 3, "affine": True}),
    ],
    ids=["prelu-per-channel", "prelu", "hardtanh", "zero_pad", "dropout-channels", "instance_norm"],
)
def test_newer_kinds_build_pytorchs_module(layer, module, arguments):
    """The built module is PyTorch's, set up as its own constructor would be with these arguments."""
    built = dict(compile_spec(spec([3, 4, 4], layer)).named_children())["0"]
    expected = module(**arguments)
    assert type(built) is module
    assert built.extra_repr() == expected.extra_repr()
    assert {k: v.shape for k, v in built.state_dict().items()} == {k: v.shape for k, v in expected.state_dict().items()}
    torch.testing.assert_close(built.state_dict(), expected.state_dict())


def test_hardtanh_and_relu6_clamp_like_pytorch():
    _, module = check(spec([3, 5], {"hardtanh": {"min": -0.5, "max": 2}}, {"relu6": {"name": "six"}}))
    x = torch.linspace(-10, 10, 30).view(2, 3, 5)
    torch.testing.assert_close(module(x), torch.clamp(torch.clamp(x, -0.5, 2.0), 0, 6))


@pytest.mark.parametrize("mode", ["row", "batch"])
@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_stochastic_depth_is_torchvisions(p, mode):
    """torchvision.ops.stochastic_depth, written out: the identity in eval; in training a noise of
    shape (N, 1, ...) (row) or (1, ...) (batch), bernoulli_(1 - p), divided by 1 - p when above 0, so
    it draws from the RNG exactly as torchvision does."""
    _, module = check(spec([3, 4, 5], {"stochastic_depth": {"p": p, "mode": mode}}))
    x = torch.randn(6, 3, 4, 5)
    module.eval()
    assert module(x) is x
    module.train()
    torch.manual_seed(7)
    got = module(x)
    torch.manual_seed(7)
    survival = 1.0 - p
    if p == 0.0:
        expected = x
    else:
        noise = torch.empty([6, 1, 1, 1] if mode == "row" else [1, 1, 1, 1]).bernoulli_(survival)
        expected = x * (noise.div_(survival) if survival > 0.0 else noise)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    if p == 1.0:
        assert not got.any()


def test_channel_shuffle_matches_torchvisions_shufflenet():
    """torchvision.models.shufflenetv2.channel_shuffle, written out: view, transpose, flatten."""
    _, module = check(spec([12, 3, 4], {"channel_shuffle": 3}))
    x = torch.randn(2, 12, 3, 4)
    expected = x.view(2, 3, 4, 3, 4).transpose(1, 2).contiguous().view(2, 12, 3, 4)
    torch.testing.assert_close(module(x), expected)


class _TorchvisionSqueezeExcitation(torch.nn.Module):
    """torchvision.ops.SqueezeExcitation (torchvision 0.29), copied: the tests need no torchvision."""

    def __init__(self, input_channels, squeeze_channels, activation, scale_activation):
        super().__init__()
        self.avgpool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc1 = torch.nn.Conv2d(input_channels, squeeze_channels, 1)
        self.fc2 = torch.nn.Conv2d(squeeze_channels, input_channels, 1)
        self.activation = activation()
        self.scale_activation = scale_activation()

    def forward(self, input):
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(input)))))
        return scale * input


@pytest.mark.parametrize(
    ("fields", "squeeze", "activation", "gate"),
    [
        ({"squeeze": 4}, 4, torch.nn.ReLU, torch.nn.Sigmoid),
        ({"ratio": 0.25, "activation": "silu"}, 4, torch.nn.SiLU, torch.nn.Sigmoid),  # EfficientNet's
        ({"ratio": 0.3, "gate": "hardsigmoid"}, 5, torch.nn.ReLU, torch.nn.Hardsigmoid),  # MobileNetV3's gate
    ],
)
def test_squeeze_excite_is_torchvisions(fields, squeeze, activation, gate):
    """The same state_dict keys and shapes as torchvision's SqueezeExcitation, and the same outputs on its weights."""
    expected = _TorchvisionSqueezeExcitation(16, squeeze, activation, gate).eval()
    model = compile_spec(spec([16, 5, 5], {"squeeze_excite": {"name": "se", **fields}})).eval()
    theirs = {f"se.{k}": v.shape for k, v in expected.state_dict().items()}
    assert {k: v.shape for k, v in model.state_dict().items()} == theirs
    model.load_state_dict({f"se.{k}": v for k, v in expected.state_dict().items()}, strict=True)
    x = torch.randn(2, 16, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected(x), rtol=0, atol=0)
