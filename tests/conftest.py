import os

import pytest


@pytest.fixture
def update_golden() -> bool:
    """ARCHSPEC_UPDATE_GOLDEN=1 rewrites golden files instead of comparing with them."""
    return os.environ.get("ARCHSPEC_UPDATE_GOLDEN") == "1"
