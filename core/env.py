"""What this machine runs: package versions and devices, for `llamafactory-cli env` and bug reports.

Versions come from package metadata (no import); only the device lines import torch.
"""

from __future__ import annotations

import platform
from importlib import metadata

PACKAGES = ("llamaboard", "torch", "transformers", "trl", "peft", "datasets", "accelerate", "gradio")

# Optional packages the project uses when they are installed: distribution -> what it turns on.
OPTIONAL_PACKAGES = {
    "bitsandbytes": "4/8-bit QLoRA (quantization_bit; CUDA), the gpu extra",
    "deepspeed": "DeepSpeed ZeRO-2/3 (deepspeed:), the deepspeed extra",
    "galore-torch": "use_galore, the optim extra",
    "apollo-torch": "use_apollo, the optim extra",
    "badam": "use_badam, the optim extra",
    "adam-mini": "use_adam_mini, the optim extra",
    "math-verify": "grpo reward math_equal",
    "liger-kernel": "enable_liger_kernel",
    "tensorboard": "report_to: tensorboard",
    "wandb": "report_to: wandb",
    "swanlab": "report_to: swanlab",
    "mlflow": "report_to: mlflow",
    "kaleido": "PNG charts from plot_loss (HTML charts need nothing)",
    "nvidia-ml-py": "GPU utilisation and power in the job's system metrics",
}


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
    for name, use in OPTIONAL_PACKAGES.items():
        version = package_version(name)
        info[name] = f"{version} ({use})" if version != "not installed" else f"not installed ({use})"
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


REFUSED_FIELDS = {"use_asft_loss": "the ASFT loss (its reference pass is not run; use_dft_loss works)"}
"""Keys the argument classes know (so a YAML names them) that the parser still refuses when turned on."""


def refused_keys() -> list[str]:
    """LLaMA-Factory keys and values this project still refuses, each `key: what it would turn on`."""
    from core.hparams.keys import UNSUPPORTED_KEYS, UNSUPPORTED_VALUES

    lines = [f"{key}: {what}" for key, (_, what) in sorted(UNSUPPORTED_KEYS.items())]
    for key, values in sorted(UNSUPPORTED_VALUES.items()):
        lines += [f"{key}: {value} ({what})" for value, what in sorted(values.items())]
    lines += [f"{key}: {what}" for key, what in REFUSED_FIELDS.items()]
    return lines
