"""Build hook for the cffi extension; all metadata lives in pyproject.toml."""

from setuptools import setup

setup(
    cffi_modules=[
        "tracing/_native_build.py:ffibuilder",
        "otel_bridge/_wire_native_build.py:ffibuilder",
        "lakehouse/_durable_native_build.py:ffibuilder",
    ]
)
