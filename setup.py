"""Build of the native part (metadata and everything else: pyproject.toml)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "provisioner.services.crm._postings",
            ["provisioner/services/crm/_postings.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra"],
        ),
    ],
)
