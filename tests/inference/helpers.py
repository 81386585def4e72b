"""Plain helpers of the inference tests (constants), imported by the test
modules and by ``conftest.py``'s fixtures; fixtures stay in ``conftest.py``."""

from __future__ import annotations

VOCAB = ["circle", "square", "stripes"]
