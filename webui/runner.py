"""The only owner of job processes: start, abort, re-attach.

A job is `[python, -m, core.cli, train, <run>/job.yaml]` in its own session (so its own process group), with
stdout and stderr going to `<run>/job.log` (a file: a pipe nobody reads stalls the job once it fills). The
runner keeps `<run>/job.json` current (DESIGN.md section 3). Abort sends SIGTERM to the group (the job saves at
the next step and exits), then SIGKILL to the group and to every descendant after a grace period, so no
torchrun worker survives, even one that left the group. A restarted board finds running jobs again from their
folders (`reattach`).

Scheduling: each job asks for devices (GPU ids; none chosen = every visible one) and runs with
CUDA_VISIBLE_DEVICES set to them. Jobs on disjoint devices run at once; a job whose devices are busy waits in the
queue (job.json state `queued`, its `queue_position`; the order in `<saves>/.queue.json`) and starts by itself when
they free up, first come first served: a waiting job also holds back later jobs that want its devices, so a big job
is not starved by small ones. A machine without GPUs has one device, "cpu": one job at a time. The queue file lets
a restarted board pick the queue up again.

Nothing secret and nothing outside the board's roots gets into a job: `start` refuses token-like keys and values
(webui.paths.secret_problems) and, when the runner has roots, paths outside them.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

from core.paths import saves_dir
from webui import jobs
from webui.paths import PathRefused, Roots, secret_problems

logger = logging.getLogger(__name__)

LEFTOVER_GRACE_S = 5.0
"""After the main process exits on its own, other members of its group get this long before SIGKILL."""

QUEUE_FILE = ".queue.json"
"""Under the saves folder: the run folders waiting for devices, in order (the queue survives a board restart)."""

CPU = "cpu"
"""The one device of a machine without GPUs."""

DISK_FULL_BYTES = 16 * 1024 * 1024
"""A failed job whose output folder has less free space than this is reported as having filled the disk."""


class RunnerError(RuntimeError):
    """A job cannot be started or stopped; the message says why and what to do."""


class _Job:
    """A job this runner watches: one it started (`popen`) or one it re-attached to (`process`)."""

    def __init__(self, run_dir: Path, job: dict[str, Any], popen: subprocess.Popen | None = None) -> None:
        self.run_dir = run_dir
        self.job = job
        self.popen = popen
        self.pgid: int = job["pgid"]
        self.abort_requested = threading.Event()
        self.abort_deadline = 0.0
        self.done = threading.Event()
        self._write_lock = threading.Lock()
        # Descendants seen so far: a worker that calls setsid() leaves the group, and once the launcher exits
        # it is no longer anyone's descendant, so remember every child we have seen while we still can.
        self.seen: dict[int, psutil.Process] = {}

    def write(self) -> None:
        with self._write_lock:
            _write_job(self.run_dir, self.job)

    def remember_descendants(self) -> None:
        try:
            root = psutil.Process(self.job["pid"])
            for child in root.children(recursive=True):
                self.seen.setdefault(child.pid, child)
        except psutil.Error:
            pass


class Runner:
    """Starts jobs on free devices, queues the others, and watches them.

    `job_command` replaces `[python, -m, core.cli, train]` (the job.yaml path is appended): tests pass a fake job
    script so they need no training. `grace_s` is how long an aborted job may take to save before SIGKILL.
    `devices` are the GPU ids jobs may ask for (default: `list_devices()`; empty: a CPU-only machine). `roots`, when
    given, are the folders a job's paths must lie in (the board passes its own; None checks nothing).
    """

    def __init__(
        self,
        saves_root: str | os.PathLike | None = None,
        python: str = sys.executable,
        grace_s: float = 30.0,
        job_command: Sequence[str] | None = None,
        env: dict[str, str] | None = None,
        devices: Sequence[str] | None = None,
        roots: Roots | None = None,
    ) -> None:
        self.saves_root = Path(saves_root) if saves_root is not None else saves_dir()
        self.python = python
        self.grace_s = grace_s
        self.leftover_grace_s = min(LEFTOVER_GRACE_S, grace_s)
        self.job_command = list(job_command) if job_command else [python, "-m", "core.cli", "train"]
        self.env = env
        self.devices = [str(device) for device in devices] if devices is not None else [d for d, _ in list_devices()]
        self.roots = roots
        self._lock = threading.RLock()
        self._jobs: dict[Path, _Job] = {}
        self._queue: list[tuple[Path, dict[str, Any]]] = []

    # --- commands ---

    def argv_for(self, run_dir: str | os.PathLike) -> list[str]:
        """The exact argv a job in `run_dir` runs with."""
        return [*self.job_command, str(Path(run_dir) / jobs.JOB_YAML)]

    def command_preview(
        self, args: dict[str, Any], run_dir: str | os.PathLike, devices: Sequence[str] | None = None
    ) -> str:
        """The argv the runner will use, shell-quoted (with the CUDA_VISIBLE_DEVICES it sets), and the equivalent
        LLaMA-Factory style command."""
        yaml_path = Path(run_dir) / jobs.JOB_YAML
        argv = " ".join(shlex.quote(part) for part in self.argv_for(run_dir))
        wanted = self.wanted_devices(devices)
        prefix = f"CUDA_VISIBLE_DEVICES={','.join(wanted)} " if wanted != [CPU] else ""
        return f"{prefix}{argv}\n# same as:\n{prefix}llamafactory-cli train {shlex.quote(str(yaml_path))}"

    def wanted_devices(self, devices: Sequence[str] | None = None) -> list[str]:
        """The devices a job asking for `devices` gets: those (checked), or every visible one when none is named;
        ["cpu"] on a machine without GPUs."""
        if not self.devices:
            return [CPU]
        wanted = [str(device).strip() for device in devices or [] if str(device).strip()]
        unknown = [device for device in wanted if device not in self.devices]
        if unknown:
            raise RunnerError(
                f"Devices {', '.join(unknown)} are not visible to the board (visible: {', '.join(self.devices)}). "
                "Pick from the device list."
            )
        return sorted(set(wanted), key=self.devices.index) if wanted else list(self.devices)

    def check(self, args: dict[str, Any], run_dir: str | os.PathLike) -> list[str]:
        """What keeps these arguments from being written into a job: secrets, and paths outside the roots."""
        problems = secret_problems(args)
        if self.roots is not None:
            try:
                self.roots.check(run_dir, "output_dir", write=True)
            except PathRefused as err:
                problems.append(str(err))
            problems.extend(problem for problem in self.roots.check_args(args) if problem not in problems)
        return problems

    # --- lifecycle ---

    def start(
        self,
        args: dict[str, Any],
        run_dir: str | os.PathLike,
        devices: Sequence[str] | None = None,
        zero: tuple[int, bool] | None = None,
    ) -> dict[str, Any]:
        """Write job.yaml and job.json into `run_dir`, then spawn the job on `devices` (none named: every visible
        one), or queue it when they are busy. Returns its job.json dict: state "running", or "queued" with its
        `queue_position` (1 = next).

        `zero` = (stage, offload) writes a DeepSpeed ZeRO config into the run folder and sets `deepspeed` to it.
        Raises RunnerError when the arguments hold a secret or a path outside the roots, when a device is unknown,
        or when `run_dir` already holds a run (unless the arguments resume it: `resume_from_checkpoint` or
        `overwrite_output_dir`).
        """
        from webui.args import dump_yaml

        run_dir = Path(run_dir).resolve()
        args = dict(args)
        if zero is not None:
            from core.deepspeed import zero_config_name

            args["deepspeed"] = str(run_dir / zero_config_name(*zero))
        problems = self.check(args, run_dir)
        if problems:
            raise RunnerError("\n".join(problems))
        wanted = self.wanted_devices(devices)
        with self._lock:
            previous = jobs.read_job(run_dir)
            if run_dir in self._queued_dirs():
                raise RunnerError(f"A job is already queued in {run_dir}; choose a new run name.")
            if previous is not None and previous.get("state") in jobs.LIVE_STATES:
                elsewhere = "" if run_dir in self._jobs else f" (pid {previous.get('pid')}), started elsewhere"
                raise RunnerError(
                    f"A job is already {previous.get('state')} in {run_dir}{elsewhere}; choose a new run name."
                )
            if previous is not None and not (args.get("resume_from_checkpoint") or args.get("overwrite_output_dir")):
                raise RunnerError(
                    f"The run folder {run_dir} already holds a run (state {previous.get('state')}). Choose a new "
                    "run name, or set resume_from_checkpoint / overwrite_output_dir to reuse it."
                )
            run_dir.mkdir(parents=True, exist_ok=True)
            if zero is not None:
                from core.deepspeed import write_zero_config

                write_zero_config(args["deepspeed"], *zero)
            (run_dir / jobs.JOB_YAML).write_text(dump_yaml(args), encoding="utf-8")
            job: dict[str, Any] = {
                "id": uuid.uuid4().hex[:12],
                "argv": self.argv_for(run_dir),
                "pid": None,
                "pgid": None,
                "devices": wanted,
                "stage": str(args.get("stage", "sft")),
                "state": "queued",
                "created": time.time(),
                "started": None,
                "ended": None,
                "exit_code": None,
                "error": "",
                "log": jobs.JOB_LOG,
            }
            jobs.write_job_json(run_dir, job)
            self._queue.append((run_dir, job))
            self._schedule()
            if job["state"] == "failed":
                raise RunnerError(job["error"])
            return dict(job)

    def _spawn(self, run_dir: Path, job: dict[str, Any]) -> None:
        """Start a queued job's process (called with the lock held)."""
        argv = job["argv"]
        env = dict(self.env if self.env is not None else os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        if job["devices"] != [CPU]:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(job["devices"])
        job.pop("queue_position", None)
        try:
            with (run_dir / jobs.JOB_LOG).open("ab") as log:
                popen = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env=env,
                    cwd=os.getcwd(),
                )
        except OSError as err:
            job.update(state="failed", ended=time.time(), error=f"Could not start {argv[0]}: {err}")
            _write_job(run_dir, job)
            raise RunnerError(job["error"]) from err
        job.update(pid=popen.pid, pgid=popen.pid, state="running", started=time.time())
        try:
            job["pid_create_time"] = psutil.Process(popen.pid).create_time()
        except psutil.Error:
            pass  # it already ended; the waiter records how
        _write_job(run_dir, job)
        watched = _Job(run_dir, job, popen)
        # Ended jobs are forgotten here: their folders say everything about them from now on.
        self._jobs = {path: old for path, old in self._jobs.items() if not old.done.is_set()}
        self._jobs[run_dir] = watched
        logger.info("Started job %s in %s on %s: %s", job["id"], run_dir, ",".join(job["devices"]), shlex.join(argv))
        threading.Thread(target=self._wait_started, args=(watched,), name=f"job-{job['id']}", daemon=True).start()

    def _schedule(self) -> None:
        """Start every queued job whose devices are free, in order; a waiting job holds its devices back from
        the jobs behind it. Then record the queue (file and positions). Called with the lock held."""
        busy = {
            device
            for watched in self._jobs.values()
            if not watched.done.is_set()
            for device in _devices_of(watched.job, self.devices)
        }
        held: set[str] = set()
        waiting = []
        first_error: RunnerError | None = None
        for run_dir, job in self._queue:
            wanted = set(_devices_of(job, self.devices))
            if wanted & (busy | held):
                held |= wanted
                waiting.append((run_dir, job))
                continue
            try:
                self._spawn(run_dir, job)
                busy |= wanted
            except RunnerError as err:
                first_error = first_error or err
        self._queue = waiting
        for position, (run_dir, job) in enumerate(waiting, start=1):
            if job.get("queue_position") != position:
                job["queue_position"] = position
                _write_job(run_dir, job)
        self._save_queue()
        if first_error is not None:
            logger.warning("A queued job could not start: %s", first_error)

    def _queued_dirs(self) -> list[Path]:
        return [run_dir for run_dir, _ in self._queue]

    def _save_queue(self) -> None:
        path = self.saves_root / QUEUE_FILE
        try:
            if not self._queue and not path.exists():
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{QUEUE_FILE}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"queue": [str(run_dir) for run_dir in self._queued_dirs()]}, indent=2))
            os.replace(tmp, path)
        except OSError as err:
            logger.warning("Could not record the queue in %s: %s (it will not survive a restart)", path, err)

    def queued(self) -> list[Path]:
        """Run folders of jobs waiting for devices, next first."""
        with self._lock:
            return self._queued_dirs()

    def queue_position(self, run_dir: str | os.PathLike) -> int | None:
        """1 for the next job to start, None when `run_dir` is not waiting."""
        queued = self.queued()
        run_dir = Path(run_dir).resolve()
        return queued.index(run_dir) + 1 if run_dir in queued else None

    def cancel(self, run_dir: str | os.PathLike) -> bool:
        """Take a waiting job out of the queue (state "aborted", "cancelled while queued"). False when it was not
        waiting."""
        run_dir = Path(run_dir).resolve()
        with self._lock:
            for index, (path, job) in enumerate(self._queue):
                if path == run_dir:
                    del self._queue[index]
                    job.pop("queue_position", None)
                    job.update(state="aborted", ended=time.time(), error="Cancelled while waiting in the queue.")
                    _write_job(run_dir, job)
                    logger.info("Cancelled the queued job in %s.", run_dir)
                    self._schedule()
                    return True
        return False

    def abort(self, run_dir: str | os.PathLike) -> None:
        """SIGTERM to the job's process group and descendants; SIGKILL to whatever is left after `grace_s`.

        Returns at once; the job's state becomes "aborted" when it has ended. A queued job is cancelled.
        Aborting a job that already ended does nothing.
        """
        run_dir = Path(run_dir).resolve()
        if self.cancel(run_dir):
            return
        with self._lock:
            watched = self._jobs.get(run_dir)
        if watched is None or watched.done.is_set():
            logger.info("Abort: no running job in %s.", run_dir)
            return
        if watched.abort_requested.is_set():
            return
        watched.abort_deadline = time.monotonic() + self.grace_s
        watched.abort_requested.set()
        watched.job["abort_requested"] = True
        watched.write()
        watched.remember_descendants()
        _signal_all(watched, signal.SIGTERM)
        threading.Thread(target=self._escalate, args=(watched,), daemon=True).start()

    def active(self) -> list[Path]:
        """Run folders of jobs that are still running."""
        return [path for path, watched in list(self._jobs.items()) if not watched.done.is_set()]

    def wait(self, run_dir: str | os.PathLike, timeout: float | None = None) -> dict[str, Any] | None:
        """Block until the job in `run_dir` has ended (or `timeout`), then return its job.json dict."""
        run_dir = Path(run_dir).resolve()
        deadline = None if timeout is None else time.monotonic() + timeout
        while run_dir in self.queued() and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.05)
        watched = self._jobs.get(run_dir)
        if watched is not None:
            watched.done.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return jobs.read_job(run_dir)

    def reattach(self) -> list[Path]:
        """Find jobs under the saves folder that are still running (pid and start time match) and watch them
        again; jobs whose process ended while no board watched get their final state written. The queue file's
        jobs wait again, in their order, and start when their devices are free. Returns the run folders of the
        running ones."""
        queued = self._load_queue()
        found = []
        for job_file in sorted(self.saves_root.glob(f"*/*/*/{jobs.JOB_JSON}")):
            run_dir = job_file.parent.resolve()
            if run_dir in self._jobs or run_dir in queued:
                continue
            job = jobs._read_json(job_file)
            if job is None or job.get("state") not in jobs.LIVE_STATES:
                continue
            if jobs.process_alive(job) and isinstance(job.get("pgid"), int):
                watched = _Job(run_dir, job)
                if job.get("abort_requested"):
                    watched.abort_deadline = time.monotonic() + self.grace_s
                    watched.abort_requested.set()
                with self._lock:
                    self._jobs[run_dir] = watched
                threading.Thread(target=self._wait_reattached, args=(watched,), daemon=True).start()
                if watched.abort_requested.is_set():
                    threading.Thread(target=self._escalate, args=(watched,), daemon=True).start()
                found.append(run_dir)
                logger.info("Re-attached to the running job in %s (pid %s).", run_dir, job["pid"])
            else:
                job["state"], job["error"] = jobs.settled_state(run_dir, job)
                job["ended"] = job.get("ended") or time.time()
                jobs.write_job_json(run_dir, job)
        with self._lock:
            known = set(self._queued_dirs())
            for run_dir, job in queued.items():
                if run_dir not in known:
                    self._queue.append((run_dir, job))
            if queued:
                logger.info("%d job(s) wait in the queue again: %s", len(queued), ", ".join(map(str, queued)))
            self._schedule()
        return found

    def _load_queue(self) -> dict[Path, dict[str, Any]]:
        """The queue file's jobs that still wait (job.json state "queued", no process), in order."""
        path = self.saves_root / QUEUE_FILE
        try:
            entries = json.loads(path.read_text(encoding="utf-8")).get("queue") or []
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, AttributeError) as err:
            logger.warning("Ignoring the queue file %s, which cannot be read: %s", path, err)
            return {}
        queued: dict[Path, dict[str, Any]] = {}
        for entry in entries:
            run_dir = Path(str(entry)).resolve()
            job = jobs._read_json(run_dir / jobs.JOB_JSON)
            if job is not None and job.get("state") == "queued" and job.get("pid") is None:
                job["devices"] = [d for d in _devices_of(job, self.devices)]
                queued[run_dir] = job
        return queued

    # --- watching ---

    def _wait_started(self, watched: _Job) -> None:
        assert watched.popen is not None
        while True:
            try:
                code = watched.popen.wait(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                watched.remember_descendants()
        self._finish(watched, code)

    def _wait_reattached(self, watched: _Job) -> None:
        try:
            proc = psutil.Process(watched.job["pid"])
            while True:
                try:
                    proc.wait(timeout=1.0)
                    break
                except psutil.TimeoutExpired:
                    watched.remember_descendants()
        except psutil.Error:
            pass
        self._finish(watched, None)

    def _finish(self, watched: _Job, code: int | None) -> None:
        """Record how the job ended, then make sure nothing of it is left running."""
        job = watched.job
        job["ended"] = time.time()
        job["exit_code"] = code
        if watched.abort_requested.is_set():
            job["state"], job["error"] = "aborted", ""
        elif code is None:
            job["state"], job["error"] = jobs.settled_state(watched.run_dir, job)
        elif code == 0:
            job["state"], job["error"] = "finished", ""
        else:
            job["state"] = "failed"
            # A signal leaves no traceback; the log's last words would only mislead.
            summary = jobs.error_summary(jobs.read_tail(watched.run_dir / jobs.JOB_LOG)) if code > 0 else ""
            job["error"] = _disk_full(watched.run_dir, summary) or summary or _describe_exit(code)
        if watched.abort_requested.is_set():
            _reap(watched, watched.abort_deadline - time.monotonic())
        elif any(_running(proc) for proc in watched.seen.values()) or _group_members(watched.pgid):
            _signal_all(watched, signal.SIGTERM)
            _reap(watched, self.leftover_grace_s)
        watched.write()
        logger.info("Job %s in %s ended: %s %s", job.get("id"), watched.run_dir, job["state"], job["error"])
        watched.done.set()
        with self._lock:
            self._schedule()  # its devices are free: the next job in the queue may start

    def _escalate(self, watched: _Job) -> None:
        _reap(watched, watched.abort_deadline - time.monotonic())


def list_devices() -> list[tuple[str, str]]:
    """The GPUs jobs may use, as (id, name): CUDA_VISIBLE_DEVICES when the board was given one, else
    `nvidia-smi -L`; empty on a machine without NVIDIA GPUs. The board never imports torch to ask."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [part.strip() for part in visible.split(",") if part.strip()]
        # "-1" (or any negative id) hides every GPU, and so does everything after it.
        ids = ids[: next((i for i, part in enumerate(ids) if part.startswith("-")), len(ids))]
        return [(device, f"GPU {device}") for device in ids]
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    devices = []
    for line in listed.stdout.splitlines():
        head, _, rest = line.partition(":")
        if head.startswith("GPU ") and head[4:].strip().isdigit():
            devices.append((head[4:].strip(), f"{head.strip()}: {rest.split('(UUID')[0].strip()}"))
    return devices


def _devices_of(job: dict[str, Any], visible: list[str]) -> list[str]:
    """The devices a job holds, from its job.json (a list; older files say "all", "cpu" or "0,1")."""
    devices = job.get("devices")
    if isinstance(devices, list):
        return [str(device) for device in devices]
    if devices in (None, "", "all"):
        return list(visible) or [CPU]
    return [part.strip() for part in str(devices).split(",") if part.strip()]


def _write_job(run_dir: Path, job: dict[str, Any]) -> None:
    """job.json, atomically when the disk allows; on a full disk in place (the old file's space is reused),
    so a job that filled the disk still ends with its state and cause recorded."""
    try:
        jobs.write_job_json(run_dir, job)
    except OSError as err:
        for leftover in run_dir.glob(f".{jobs.JOB_JSON}.*.tmp"):
            leftover.unlink(missing_ok=True)
        try:
            with (run_dir / jobs.JOB_JSON).open("r+", encoding="utf-8") as handle:
                handle.truncate(0)
                handle.write(json.dumps(job, indent=2, default=str))
        except OSError as again:
            logger.error("Could not record the state of the job in %s: %s (%s)", run_dir, again, err)


def _disk_full(run_dir: Path, summary: str) -> str:
    """The cause of a failure when the job's output disk is (nearly) full, else ""."""
    try:
        free = shutil.disk_usage(run_dir).free
    except OSError:
        return ""
    if free >= DISK_FULL_BYTES and "No space left on device" not in summary:
        return ""
    detail = f" Last error: {summary}" if summary else ""
    return (
        f"The disk holding {run_dir} is full ({free // (1024 * 1024)} MiB free): free some space or choose "
        f"an output folder on another disk, then start again.{detail}"
    )


def _describe_exit(code: int) -> str:
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        hint = " (out of memory? the system may have killed it)" if -code == signal.SIGKILL else ""
        return f"The job was killed by {name}{hint}."
    return f"The job exited with code {code}; see the log above."


def _group_members(pgid: int) -> list[psutil.Process]:
    members = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and _running(proc):
                members.append(proc)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return members


def _signal_all(watched: _Job, sig: signal.Signals) -> None:
    try:
        os.killpg(watched.pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
    for proc in list(watched.seen.values()):
        try:
            proc.send_signal(sig)
        except psutil.Error:
            pass


def _reap(watched: _Job, grace_s: float) -> None:
    """Wait up to `grace_s` for the job's group and every descendant seen to exit, then SIGKILL the rest."""
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        alive = [proc for proc in watched.seen.values() if _running(proc)] + _group_members(watched.pgid)
        if not alive:
            return
        time.sleep(0.1)
    survivors = [proc for proc in watched.seen.values() if _running(proc)] + _group_members(watched.pgid)
    if survivors:
        logger.warning("Killing %d process(es) of the job in %s with SIGKILL.", len(survivors), watched.run_dir)
    _signal_all(watched, signal.SIGKILL)
    # Poll rather than psutil.wait_procs: waiting would reap our own child and hide its exit code from Popen.
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and any(_running(proc) for proc in survivors):
        time.sleep(0.05)


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
