"""Shared pytest configuration."""

from __future__ import annotations


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers",
        "fuzz: property-based fuzzing with CASC_FUZZ_EXAMPLES examples per property "
        "(the dedicated run: CASC_FUZZ_EXAMPLES=1200 python -m pytest -m fuzz tests/test_fuzz.py)",
    )
