import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from scanlab import config

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=60,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "dev",
    deadline=None,
    max_examples=60,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

#: Tolerances of a result against the float64 reference, by dtype.
TOLERANCES = {
    np.dtype(np.float32): 2e-4,
    np.dtype(np.complex64): 2e-4,
    np.dtype(np.float64): 1e-10,
    np.dtype(np.complex128): 1e-10,
}


def assert_close(result, expected, dtype=None):
    """``result`` equals ``expected`` to the tolerance of its dtype, NaN/Inf in the same places."""
    dtype = np.dtype(dtype or result.dtype)
    assert result.dtype == dtype
    assert result.shape == expected.shape
    scale = max(1.0, float(np.max(np.abs(expected[np.isfinite(expected)]), initial=0.0)))
    tolerance = TOLERANCES[dtype]
    np.testing.assert_allclose(result, expected, rtol=tolerance, atol=tolerance * scale)


@pytest.fixture
def small_chunks():
    """Shrink the CPU tunables so tiny inputs cross many chunks and blocks, and `auto` scans."""
    saved = config.CPUConfig(**vars(config.cpu))
    config.cpu.cache_bytes = 256
    config.cpu.auto_scan_min_length = 8
    config.cpu.auto_scan_max_row_bytes = 64
    yield config.cpu
    for name, value in vars(saved).items():
        setattr(config.cpu, name, value)
