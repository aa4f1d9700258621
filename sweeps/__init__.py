"""LoRA Sweep: find the best LoRA adapter for your data.

The public API mirrors the CLI::

    from sweeps import launch_sweep, run_trial, load_config, best_trial

    state = launch_sweep("search_spaces/lora.yaml")          # a whole sweep
    outcome = run_trial("search_spaces/lora.yaml",            # one adapter, no Ray
                        {"learning_rate": 1e-3, "lora_r": 8, "lora_alpha": 16, "num_epochs": 1},
                        output_dir="runs/one")

Heavy libraries (torch, ray, mlflow) are imported only when a function needs them.
"""

from __future__ import annotations

from sweeps.api import best_trial, run_trial, sweep_status, validate_config
from sweeps.config import load_config
from sweeps.driver.launch import launch_sweep

__all__ = [
    "best_trial",
    "launch_sweep",
    "load_config",
    "run_trial",
    "sweep_status",
    "validate_config",
]
