import os

# The Triton kernels run on the CPU through Triton's interpreter when no GPU is present.
# It must be set before triton is first imported.
if not os.environ.get("LGF_TEST_NO_TRITON_INTERPRET"):
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

SHARED_DATA = os.path.normpath(
    os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "aerial-cars-kit")
)


@pytest.fixture(scope="session")
def aerial_cars_kit():
    """Path to ../shared/data/aerial-cars-kit (train.json, val.json and images)."""
    if not os.path.isdir(SHARED_DATA):
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA
