"""What this machine runs: package versions and devices, for `llamafactory-cli env` and bug reports.

Versions come from package metadata (no import); only the device lines import torch.
"""

from __future__ import annotations

import platform
from importlib import metadata

PACKAGES = ("llamaboard", "torch", "transformers", "trl", "peft", "datasets", "accelerate", "gradio", "bitsandbytes")


def package_version(name: str) -> str:
    """The installed version of a distribution, or "not installed"."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def collect_env(devices: bool = True) -> dict[str, str]:
    """Python, platform, package versions and (when `devices`) CUDA availability, as label -> text."""
    info = {"Python": platform.python_version(), "Platform": platform.platform()}
    info.update({name: package_version(name) for name in PACKAGES})
    if devices:
        info.update(_device_info())
    return info


def _device_info() -> dict[str, str]:
    try:
        import torch
    except ImportError:
        return {"CUDA available": "unknown (torch is not installed)"}
    info = {"CUDA available": str(torch.cuda.is_available())}
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        info["CUDA version"] = str(torch.version.cuda)
        info["GPU count"] = str(count)
        for index in range(count):
            props = torch.cuda.get_device_properties(index)
            info[f"GPU {index}"] = f"{props.name}, {props.total_memory / 2**30:.1f} GiB"
        info["bf16 supported"] = str(torch.cuda.is_bf16_supported())
    info["CPU threads (torch)"] = str(torch.get_num_threads())
    return info


def format_env(info: dict[str, str]) -> str:
    """Aligned `label: value` lines."""
    width = max(len(label) for label in info)
    return "\n".join(f"{label + ':':<{width + 1}} {value}" for label, value in info.items())
