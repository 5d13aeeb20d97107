"""Several processes, GPUs or nodes: `llamafactory-cli train job.yaml` hands itself over to torchrun when needed.

    FORCE_TORCHRUN=1 NPROC_PER_NODE=2 llamafactory-cli train job.yaml                       # 2 ranks on this machine
    NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 MASTER_PORT=29500 llamafactory-cli train job.yaml   # on node 0
    NNODES=2 NODE_RANK=1 MASTER_ADDR=10.0.0.1 MASTER_PORT=29500 llamafactory-cli train job.yaml   # on node 1

One plain process trains on one device. torchrun is used when more than one device is visible, when `NNODES` > 1 or
`NPROC_PER_NODE` > 1 is asked for, when the job names a `deepspeed` config (DeepSpeed expects a distributed
launcher even for one GPU), or when `FORCE_TORCHRUN=1`. The process then *becomes*
`python -m torch.distributed.run ... -m core.cli train <same arguments>` (exec: same pid, same process group, and
torchrun's exit status is the job's), and each worker runs `core.cli train` again with `LLAMABOARD_LAUNCHED=1` so
it trains instead of relaunching. A job started by any other launcher (`LOCAL_RANK` set) is never relaunched.

Note for whoever stops jobs or reads their logs: torchrun starts each worker in its own session, so a signal to the
job's process group reaches torchrun, which forwards it once to the workers and SIGKILLs them 30 s later; workers
that must be reached directly have to be found as descendants. Torchrun exits 1 when a worker fails (the worker's
traceback is in the log on lines prefixed `[rank0]: `, followed by torchrun's ChildFailedError block) and also
after a stop by signal, even though every rank then saved.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shlex
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.hparams.parser import ArgumentError

logger = logging.getLogger(__name__)

LAUNCHED_MARKER = "LLAMABOARD_LAUNCHED"
"""Set in the workers' environment: `core.cli train` under torchrun trains instead of launching again."""

DEFAULT_MASTER_ADDR = "127.0.0.1"
DEFAULT_MULTINODE_PORT = 29500
"""torch's own default; every node must agree on the port, so a multi-node run cannot pick a random one."""

_TRUE = {"1", "true", "yes", "on", "y"}


@dataclass(frozen=True)
class LaunchPlan:
    """How torchrun is started: machines, this machine's rank, processes per machine, where rank 0 listens.

    `master_port` None on a single machine means torchrun picks a free port itself (`--standalone`), so several
    jobs on one box never collide.
    """

    nnodes: int = 1
    node_rank: int = 0
    nproc_per_node: int = 1
    master_addr: str = DEFAULT_MASTER_ADDR
    master_port: int | None = None

    @property
    def world_size(self) -> int:
        return self.nnodes * self.nproc_per_node


class LaunchError(ArgumentError):
    """The launch environment variables are wrong; `problems` lists each, worded for people (the CLI exits 2)."""


def is_enabled(value: str | None) -> bool:
    return (value or "").strip().lower() in _TRUE


def already_launched(env: Mapping[str, str]) -> bool:
    """True inside a worker of ours, or of any launcher that sets LOCAL_RANK (torchrun, accelerate, deepspeed)."""
    return is_enabled(env.get(LAUNCHED_MARKER)) or "LOCAL_RANK" in env


def device_count() -> int:
    """Accelerators this process can see (CUDA_VISIBLE_DEVICES applies); 0 on a CPU-only machine."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.device_count()
    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None and accelerator.is_available():
        return accelerator.device_count()
    return 0


def _int_var(env: Mapping[str, str], name: str, default: int, minimum: int, what: str, problems: list[str]) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        problems.append(f"{name}: received {raw!r} — not a whole number — set it to {what}, or unset it.")
        return default
    if value < minimum:
        problems.append(f"{name}: received {value} — must be at least {minimum} — set it to {what}, or unset it.")
        return default
    return value


def env_problems(env: Mapping[str, str] | None = None) -> list[str]:
    """Problems with NNODES, NODE_RANK, NPROC_PER_NODE, MASTER_PORT (checked even when no torchrun is needed, so a
    typo is caught on the first node instead of after the others wait for it)."""
    try:
        launch_plan(os.environ if env is None else env, devices=None)
    except LaunchError as err:
        return err.problems
    return []


def launch_plan(env: Mapping[str, str], devices: int | None) -> LaunchPlan:
    """The torchrun settings from the environment; `devices` (visible accelerators, None when not counted) is the
    default process count and its upper bound (0: CPU processes, no bound).

    Raises LaunchError listing every wrong variable.
    """
    problems: list[str] = []
    devices = devices or 0
    nnodes = _int_var(env, "NNODES", 1, 1, "the number of machines (1 for one machine)", problems)
    node_rank = _int_var(env, "NODE_RANK", 0, 0, "this machine's index, 0 on the machine at MASTER_ADDR", problems)
    nproc = _int_var(env, "NPROC_PER_NODE", max(devices, 1), 1, "the processes per machine (one per GPU)", problems)
    port = _int_var(
        env, "MASTER_PORT", 0, 1, "a free TCP port on the MASTER_ADDR machine, the same on every node", problems
    )
    if devices and nproc > devices:
        problems.append(
            f"NPROC_PER_NODE: received {nproc} but {devices} device(s) are visible — one process per device: use at "
            "most that many, or choose the devices with CUDA_VISIBLE_DEVICES."
        )
    if port > 65535:
        problems.append(f"MASTER_PORT: received {port} — a TCP port is at most 65535 — choose a free port.")
    if node_rank >= nnodes and "NNODES" in env:
        problems.append(
            f"NODE_RANK: received {node_rank} — with NNODES={nnodes} it must be 0 to {nnodes - 1} — number the "
            "machines from 0 (0 on the machine at MASTER_ADDR)."
        )
    elif node_rank > 0 and nnodes == 1:
        problems.append(
            f"NODE_RANK: received {node_rank} but NNODES is {env.get('NNODES', 'not set (1)')} — set NNODES to the "
            "number of machines on every node."
        )
    if 0 < node_rank < nnodes and not env.get("MASTER_ADDR", "").strip():
        # torchrun would wait for a rank 0 on this machine's loopback until its rendezvous times out.
        problems.append(
            f"MASTER_ADDR: not set on node {node_rank} of {nnodes} — set it to the address of the machine with "
            "NODE_RANK=0 (the same value on every node)."
        )
    if problems:
        raise LaunchError(problems)
    master_addr = env.get("MASTER_ADDR", "").strip() or DEFAULT_MASTER_ADDR
    if nnodes > 1:
        return LaunchPlan(nnodes, node_rank, nproc, master_addr, port or DEFAULT_MULTINODE_PORT)
    return LaunchPlan(1, 0, nproc, master_addr, port or None)


def needs_torchrun(env: Mapping[str, str], devices: int, args: Mapping[str, Any] | None = None) -> bool:
    """Whether this job should run under torchrun (see the module docstring for the rules)."""
    if already_launched(env):
        return False
    if is_enabled(env.get("FORCE_TORCHRUN")) or (args or {}).get("deepspeed"):
        return True
    for name in ("NNODES", "NPROC_PER_NODE"):
        raw = env.get(name, "").strip()
        if raw.isdigit() and int(raw) > 1:
            return True
    return devices > 1


def torchrun_argv(train_argv: list[str], plan: LaunchPlan, python: str | None = None) -> list[str]:
    """`python -m torch.distributed.run <plan> -m core.cli train <train_argv>` as an argv list."""
    argv = [python or sys.executable, "-m", "torch.distributed.run"]
    if plan.nnodes == 1 and plan.master_port is None:
        argv += ["--standalone", "--nnodes", "1"]
    else:
        argv += ["--nnodes", str(plan.nnodes), "--node_rank", str(plan.node_rank)]
        argv += ["--master_addr", plan.master_addr, "--master_port", str(plan.master_port)]
    argv += ["--nproc_per_node", str(plan.nproc_per_node), "--max_restarts", "0"]
    return [*argv, "-m", "core.cli", "train", *train_argv]


def worker_env(env: Mapping[str, str], plan: LaunchPlan | None = None) -> dict[str, str]:
    """The environment torchrun and its workers get: the caller's, plus the marker that stops a second launch."""
    out = dict(env)
    out[LAUNCHED_MARKER] = "1"
    out.setdefault("PYTHONUNBUFFERED", "1")
    if plan is not None and plan.nproc_per_node > 1 and "OMP_NUM_THREADS" not in out:
        # torchrun would set 1 thread per worker; the machine's cores shared among the workers is fairer to CPU work.
        out["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // plan.nproc_per_node))
    return out


def deepspeed_problems(args: Mapping[str, Any]) -> list[str]:
    """`deepspeed:` must name a readable JSON file (or be a mapping) and the deepspeed package must be installed."""
    value = args.get("deepspeed")
    if not value:
        return []
    problems = []
    if isinstance(value, str):
        path = Path(value).expanduser()
        if not path.is_file():
            problems.append(
                f"deepspeed: received {value!r} — no such file (relative paths start from {Path.cwd()}) — give the "
                "path of a DeepSpeed JSON config, e.g. one written by `python -m core.deepspeed`."
            )
        else:
            try:
                json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
                problems.append(
                    f"deepspeed: received {value!r} — not a readable JSON file ({err}) — fix or regenerate it."
                )
    elif not isinstance(value, Mapping):
        problems.append(
            f"deepspeed: received {value!r} — expected the path of a JSON config (or a mapping) — give a file path."
        )
    if importlib.util.find_spec("deepspeed") is None:
        problems.append(
            "deepspeed: the deepspeed package is not installed in this environment — install it on a machine with "
            "CUDA (pip install deepspeed), or remove the deepspeed key to train without ZeRO."
        )
    return problems


def launch_problems(args: Mapping[str, Any], env: Mapping[str, str] | None = None) -> list[str]:
    """Everything about launching that would fail later: the deepspeed key and the launch variables."""
    return deepspeed_problems(args) + env_problems(env)


def maybe_launch(
    train_argv: list[str], args: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
) -> int | None:
    """Hand this `train` command over to torchrun when the job needs it; None when this process should train.

    On POSIX the process is replaced (never returns). Elsewhere torchrun runs as a child and its exit status is
    returned. `train_argv` is what followed `train` on the command line; the workers receive it unchanged.
    """
    env = dict(os.environ if env is None else env)
    if already_launched(env):
        return None
    # A CPU job (use_cpu) on a GPU box stays one process unless more are asked for explicitly.
    devices = 0 if (args or {}).get("use_cpu") else device_count()
    if not needs_torchrun(env, devices, args):
        return None
    plan = launch_plan(env, devices)
    argv = torchrun_argv(train_argv, plan)
    if not logger.hasHandlers():
        # The CLI sets up logging only once training starts; this line is the job log's record of the launch.
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    logger.info(
        "Launching %d process(es) on node %d of %d with torchrun: %s",
        plan.nproc_per_node,
        plan.node_rank,
        plan.nnodes,
        shlex.join(argv),
    )
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    if os.name == "posix":
        os.execve(argv[0], argv, worker_env(env, plan))
    return subprocess.run(argv, env=worker_env(env, plan), check=False).returncode
