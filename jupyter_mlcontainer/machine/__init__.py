"""What the machine has: GPUs (NVML), the engine's and the cache's state, doctor's checks.
"""
