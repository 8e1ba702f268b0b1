import contextlib
import faulthandler
import gc
import os
import signal
import time

import pytest


@pytest.fixture
def update_golden() -> bool:
    """ARCHSPEC_UPDATE_GOLDEN=1 rewrites golden files instead of comparing with them."""
    return os.environ.get("ARCHSPEC_UPDATE_GOLDEN") == "1"


# The quick loop (`pytest -m "not slow"`) runs every test, but each parametrized over the zoo only on
# its small networks (conv_unit, resblk, densenet, unet_small and squeezenet1_1, the one torchvision
# net it keeps); these large ones (and the tests below) run in the full suite, as CI does.
LARGE_NETWORKS = (
    *("resnet18", "resnet34", "resnet50", "resnet101", "resnet152"),
    *("densenet121", "densenet161", "densenet169", "densenet201"),
    *("vgg11", "vgg13", "vgg16", "vgg19", "alexnet", "googlenet", "resnext", "wide_resnet", "squeezenet1_0"),
    *("mobilenet", "mnasnet", "shufflenet", "inception", "efficientnet", "regnet", "convnext"),
    "unet]",  # "unet]": not unet_small
)
SLOW_TESTS = {
    "test_installed_wheel_can_emit",  # builds and installs a wheel
    "test_inductor_compiles_a_small_spec",  # torch.compile's default backend generates and builds C++
    "test_inductor_trains_a_compiled_spec",
    "test_running_the_file_prints_the_output_shape",  # a Python process per spec
    "test_static_shapes_agree_with_torch",  # hypothesis, a forward per example
    "test_compiled_module_output_matches_static_shape",
    "test_random_specs_emit_the_live_module",
    "test_random_specs_static_shapes_equal_torch",
    "test_whatever_archspec_accepts_the_schema_accepts",  # hypothesis, 300 random specs
    "test_study_prunes_invalid_configurations_before_building",  # an Optuna study that trains
    # torch.export and dynamo trace whole graphs, seconds each (a small spec's compile test stays quick)
    "test_export_equals_eager",
    "test_compile_fullgraph_equals_eager",
    "test_compile_fullgraph_equals_eager_in_train_mode",
    # weights of resnet18 and densenet121 saved and loaded: a second each (small specs' weights stay quick)
    "test_weights_load_strictly_from_a_file",
    "test_mismatched_weights_list_missing_unexpected_and_wrong_shapes",
    "test_build_with_weights_on_the_command_line",
    "test_strict_is_the_default_and_partial_reports",
    # a Python process per case, or waits for a blocking open to be refused
    "test_a_weights_path_that_is_no_regular_file_is_refused_without_blocking",
    "test_a_fifo_is_refused_without_blocking",
    "test_yaml_nesting_beyond_the_limit_is_refused_before_composing",
    "test_output_to_dev_stdout_writes_to_stdout",
    "test_stdout_on_a_full_disk_is_a_clear_error",
    "test_the_cli_reports_every_hostile_file_without_a_traceback_within_memory",
    # hostile specs at their full size: each takes a second by design (the limits they probe)
    "test_hostile_file_is_one_located_error_in_time",
    "test_vars_in_reverse_order_work_however_many",
    "test_a_long_cycle_of_vars_is_one_error_with_a_short_message",
    "test_the_schema_is_a_valid_draft_2020_12_schema",  # jsonschema's meta-validation of the whole schema
    "test_weights_that_cannot_fit_are_refused_before_they_are_inflated",  # writes and deflates 800 MB
}

QUICK = False  # set by pytest_configure: this run deselects the slow tests


def pytest_configure(config):
    global QUICK
    QUICK = "not slow" in (config.getoption("markexpr", "") or "")
    # torchvision's recorded outputs (tests/data) were computed with oneDNN's AVX2 kernels. On an
    # AVX-512 machine oneDNN rounds differently, and MobileNetV2's reference weights (gain 4: its
    # ReLU6s must clip) amplify that to 0.4% of its output, past test_zoo's 1e-4. The recording's
    # kernels, then, wherever they exist (set before torch is first imported; a user's setting wins).
    os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")
    controller = config.getoption("numprocesses", default=None) and not hasattr(config, "workerinput")
    if controller:  # xdist's controller runs no tests: it needs no torch
        return
    import torch

    if QUICK and "OMP_NUM_THREADS" not in os.environ:
        # The quick loop runs small tensors, where torch's intra-op threads gain nothing; on a machine
        # whose cores other processes keep busy, they cost several times the run (each op waits for a
        # thread that is not scheduled). The full suite keeps torch's default.
        torch.set_num_threads(1)


def pytest_collection_finish(session):
    # What exists now (torch, hypothesis, the test modules, the collected items) lives for the whole
    # run: frozen out of the collector's generations, each full collection walks only what the tests
    # make. That is the interpreter's own and the five pytest makes at the end to find unraisable
    # exceptions, which otherwise take 0.2 s each in a process that has imported torch.
    gc.freeze()


def examples(n: int) -> int:
    """A hypothesis test's max_examples: `n` in the full suite (CI), a tenth of it (at least 10) in
    the quick loop. Examples that failed before are replayed first either way (.hypothesis/)."""
    return max(10, n // 10) if QUICK else n


@contextlib.contextmanager
def time_limit(seconds: float, what: str = "the block"):
    """Fail a block that runs longer than `seconds`. SIGALRM stops Python-level loops; a hang inside
    one C call (big-integer arithmetic) is caught by the faulthandler watchdog instead, which ends the
    process with a traceback rather than letting CI run into its own limit."""

    def expire(signum, frame):
        raise TimeoutError(f"{what} ran longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    faulthandler.dump_traceback_later(seconds * 6, exit=True)
    start = time.perf_counter()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        faulthandler.cancel_dump_traceback_later()
    elapsed = time.perf_counter() - start
    assert elapsed < seconds, f"{what} took {elapsed:.1f} s"


def pytest_collection_modifyitems(items):
    for item in items:
        large = "[" in item.nodeid and any(name in item.nodeid.split("[", 1)[1] for name in LARGE_NETWORKS)
        if large or item.originalname in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)
