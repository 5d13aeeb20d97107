"""The only owner of job processes: start, abort, re-attach.

A job is `[python, -m, core.cli, train, <run>/job.yaml]` in its own session (so its own process group), with
stdout and stderr going to `<run>/job.log` (a file: a pipe nobody reads stalls the job once it fills). The
runner keeps `<run>/job.json` current (DESIGN.md section 3). Abort sends SIGTERM to the group (the job saves at
the next step and exits), then SIGKILL to the group and to every descendant after a grace period, so no
torchrun worker survives, even one that left the group. A restarted board finds running jobs again from their
folders (`reattach`).
"""

from __future__ import annotations

import logging
import os
import shlex
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

logger = logging.getLogger(__name__)

LEFTOVER_GRACE_S = 5.0
"""After the main process exits on its own, other members of its group get this long before SIGKILL."""


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
            jobs.write_job_json(self.run_dir, self.job)

    def remember_descendants(self) -> None:
        try:
            root = psutil.Process(self.job["pid"])
            for child in root.children(recursive=True):
                self.seen.setdefault(child.pid, child)
        except psutil.Error:
            pass


class Runner:
    """Starts one job at a time and watches it.

    `job_command` replaces `[python, -m, core.cli, train]` (the job.yaml path is appended): tests pass a fake job
    script so they need no training. `grace_s` is how long an aborted job may take to save before SIGKILL.
    """

    def __init__(
        self,
        saves_root: str | os.PathLike | None = None,
        python: str = sys.executable,
        grace_s: float = 30.0,
        job_command: Sequence[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.saves_root = Path(saves_root) if saves_root is not None else saves_dir()
        self.python = python
        self.grace_s = grace_s
        self.leftover_grace_s = min(LEFTOVER_GRACE_S, grace_s)
        self.job_command = list(job_command) if job_command else [python, "-m", "core.cli", "train"]
        self.env = env
        self._lock = threading.Lock()
        self._jobs: dict[Path, _Job] = {}

    # --- commands ---

    def argv_for(self, run_dir: str | os.PathLike) -> list[str]:
        """The exact argv a job in `run_dir` runs with."""
        return [*self.job_command, str(Path(run_dir) / jobs.JOB_YAML)]

    def command_preview(self, args: dict[str, Any], run_dir: str | os.PathLike) -> str:
        """The argv the runner will use, shell-quoted, and the equivalent LLaMA-Factory style command."""
        yaml_path = Path(run_dir) / jobs.JOB_YAML
        argv = " ".join(shlex.quote(part) for part in self.argv_for(run_dir))
        return f"{argv}\n# same as:\nllamafactory-cli train {shlex.quote(str(yaml_path))}"

    # --- lifecycle ---

    def start(self, args: dict[str, Any], run_dir: str | os.PathLike) -> dict[str, Any]:
        """Write job.yaml and job.json into `run_dir`, spawn the job, and return its job.json dict.

        Raises RunnerError when a job is already running, or when `run_dir` already holds a run (unless the
        arguments resume it: `resume_from_checkpoint` or `overwrite_output_dir`).
        """
        from webui.args import dump_yaml

        run_dir = Path(run_dir).resolve()
        with self._lock:
            running = self.active()
            if running:
                raise RunnerError(
                    f"A job is already running in {running[0]}. Wait for it to finish or abort it before "
                    "starting another."
                )
            previous = jobs.read_job(run_dir)
            if previous is not None and previous.get("state") in jobs.LIVE_STATES:
                raise RunnerError(
                    f"A job is already running in {run_dir} (pid {previous.get('pid')}), started elsewhere."
                )
            if previous is not None and not (args.get("resume_from_checkpoint") or args.get("overwrite_output_dir")):
                raise RunnerError(
                    f"The run folder {run_dir} already holds a run (state {previous.get('state')}). Choose a new "
                    "run name, or set resume_from_checkpoint / overwrite_output_dir to reuse it."
                )
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / jobs.JOB_YAML).write_text(dump_yaml(args), encoding="utf-8")
            argv = self.argv_for(run_dir)
            job: dict[str, Any] = {
                "id": uuid.uuid4().hex[:12],
                "argv": argv,
                "pid": None,
                "pgid": None,
                "devices": os.environ.get("CUDA_VISIBLE_DEVICES", "all" if _has_gpu_hint() else "cpu"),
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
            env = dict(self.env if self.env is not None else os.environ)
            env.setdefault("PYTHONUNBUFFERED", "1")
            with (run_dir / jobs.JOB_LOG).open("ab") as log:
                try:
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
                    jobs.write_job_json(run_dir, job)
                    raise RunnerError(job["error"]) from err
            job.update(pid=popen.pid, pgid=popen.pid, state="running", started=time.time())
            try:
                job["pid_create_time"] = psutil.Process(popen.pid).create_time()
            except psutil.Error:
                pass  # it already ended; the waiter records how
            jobs.write_job_json(run_dir, job)
            watched = _Job(run_dir, job, popen)
            # Ended jobs are forgotten here: their folders say everything about them from now on.
            self._jobs = {path: old for path, old in self._jobs.items() if not old.done.is_set()}
            self._jobs[run_dir] = watched
        logger.info("Started job %s in %s: %s", job["id"], run_dir, shlex.join(argv))
        threading.Thread(target=self._wait_started, args=(watched,), name=f"job-{job['id']}", daemon=True).start()
        return dict(job)

    def abort(self, run_dir: str | os.PathLike) -> None:
        """SIGTERM to the job's process group and descendants; SIGKILL to whatever is left after `grace_s`.

        Returns at once; the job's state becomes "aborted" when it has ended. Aborting a job that already
        ended does nothing.
        """
        run_dir = Path(run_dir).resolve()
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
        watched = self._jobs.get(Path(run_dir).resolve())
        if watched is not None:
            watched.done.wait(timeout)
        return jobs.read_job(run_dir)

    def reattach(self) -> list[Path]:
        """Find jobs under the saves folder that are still running (pid and start time match) and watch them
        again; jobs whose process ended while no board watched get their final state written. Returns the run
        folders of the running ones."""
        found = []
        for job_file in sorted(self.saves_root.glob(f"*/*/*/{jobs.JOB_JSON}")):
            run_dir = job_file.parent.resolve()
            if run_dir in self._jobs:
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
        return found

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
            job["error"] = summary or _describe_exit(code)
        if watched.abort_requested.is_set():
            _reap(watched, watched.abort_deadline - time.monotonic())
        elif any(_running(proc) for proc in watched.seen.values()) or _group_members(watched.pgid):
            _signal_all(watched, signal.SIGTERM)
            _reap(watched, self.leftover_grace_s)
        watched.write()
        logger.info("Job %s in %s ended: %s %s", job.get("id"), watched.run_dir, job["state"], job["error"])
        watched.done.set()

    def _escalate(self, watched: _Job) -> None:
        _reap(watched, watched.abort_deadline - time.monotonic())


def _has_gpu_hint() -> bool:
    # The board never imports torch; the driver's device nodes are enough to say "not CPU-only".
    return Path("/dev/nvidia0").exists()


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
