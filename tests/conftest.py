import contextlib
import faulthandler
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
    "test_whatever_archspec_accepts_the_schema_accepts",  # hypothesis, 300 random specs
    "test_study_prunes_invalid_configurations_before_building",  # an Optuna study that trains
}

QUICK = False  # set by pytest_configure: this run deselects the slow tests


def pytest_configure(config):
    global QUICK
    QUICK = "not slow" in (config.getoption("markexpr", "") or "")
    if QUICK and "OMP_NUM_THREADS" not in os.environ:
        # The quick loop runs small tensors, where torch's intra-op threads gain nothing; on a machine
        # whose cores other processes keep busy, they cost several times the run (each op waits for a
        # thread that is not scheduled). The full suite keeps torch's default.
        import torch

        torch.set_num_threads(1)


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
