"""LlamaBoard's training core. `from core import run_exp` is lazy so that importing `core` costs nothing."""

__all__ = ["run_exp"]


def __getattr__(name: str):
    if name == "run_exp":
        from core.train.tuner import run_exp

        return run_exp
    raise AttributeError(f"module 'core' has no attribute {name!r}")
