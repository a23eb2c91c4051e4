"""Test helpers shipped with the package (the fake NVML layer for machines without a GPU)."""
