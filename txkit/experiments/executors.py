"""Where an experiment's runs train.

- ``local`` (the default): in this process, or ``--jobs N`` worker processes, one GPU each.
- ``slurm``: submitit submits the runs as Slurm job arrays, one array task per run, and the command returns.
  Earlier stages go first: each wave of runs (the runs whose earlier stages are done, then the runs that
  need those, ...) is one array that depends (``afterany``) on the array tasks of the stages it reads; a run
  whose stage failed fails at its start without training.
- ``submitit-local``: the same jobs through submitit's local executor (real subprocesses, no Slurm), at most
  ``--jobs`` at a time. It has no job dependencies, so the command waits for earlier stages and free slots
  before submitting the next runs, and returns once the last run is submitted.

The experiment directory stays the source of truth: a job's task records its run's state itself
(state.py), jobs.json names each run's job, and a run whose job ended without finishing it (killed,
preempted, out of time) counts as failed and is submitted again by the next ``experiment run``.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from txkit.errors import TxkitError
from txkit.experiments.plan import PlannedRun
from txkit.experiments.task import execute_run, run_arguments
from txkit.experiments.state import (DONE, FAILED, INTERRUPTED, QUEUED, RUNNING, ExperimentState, JobBook,
                                     write_task_state)

LOCAL, SUBMITIT_LOCAL, SLURM = "local", "submitit-local", "slurm"
EXECUTORS = (LOCAL, SUBMITIT_LOCAL, SLURM)
JOB_LOGS = Path("logs") / "submitit"  # per job: logs/submitit/JOB_ID_0_log.out (Slurm: ARRAY_TASK_0_log.out)
LOCAL_TIME_LIMIT = 7 * 24 * 60  # minutes; submitit's local executor would stop a job after 2 by default
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE",
         "PREEMPTED", "REVOKED", "SPECIAL_EXIT", "ENDED"}
OPTION_FLAGS = {"partition": "--slurm-partition", "account": "--slurm-account", "time": "--slurm-time",
                "gpus_per_task": "--slurm-gpus-per-task", "cpus_per_task": "--slurm-cpus-per-task",
                "array_parallelism": "--slurm-array-parallelism"}
SLURM_POLL_S, LOCAL_POLL_S = 30.0, 1.0


# ------------------------------------------------------------------------------------ options and rendering

def merge_options(file_options: dict, cli_options: dict) -> dict:
    """The [executor] table with the --slurm-* options on top (None: not given)."""
    return {**file_options, **{k: v for k, v in cli_options.items() if v is not None}}


def submitit_parameters(executor: str, options: dict, name: str, dependency: list[str] | None = None) -> dict:
    """What ``AutoExecutor.update_parameters`` gets: one task per job, one run per task, stderr in stdout."""
    params = {"name": name, "nodes": 1, "tasks_per_node": 1, "stderr_to_stdout": True,
              "timeout_min": options.get("time", LOCAL_TIME_LIMIT)}
    if executor != SLURM:
        return params
    if "time" not in options:
        raise TxkitError("--executor slurm needs a time limit per run: --slurm-time MINUTES or HH:MM:SS, or "
                         "time = ... in the file's [executor] table")
    if options.get("gpus_per_task"):
        params["gpus_per_node"] = options["gpus_per_task"]  # one task per job: per node = per task
    if options.get("cpus_per_task"):
        params["cpus_per_task"] = options["cpus_per_task"]
    for key in ("partition", "account", "array_parallelism"):
        if options.get(key) is not None:
            params[f"slurm_{key}"] = options[key]
    if dependency:
        params["slurm_dependency"] = "afterany:" + ":".join(dependency)
    return params


def gpu_slots(jobs: int, visible: str | None, device_count: int) -> list[str | None]:
    """CUDA_VISIBLE_DEVICES for each of ``jobs`` job slots: round-robin over the parent's own list when it
    has one, else over 0..device_count-1; None for every slot when no GPU is visible (nothing is pinned)."""
    if visible is not None:
        devices = [d.strip() for d in visible.split(",") if d.strip()]
    else:
        devices = [str(i) for i in range(device_count)]
    return [devices[i % len(devices)] if devices else None for i in range(jobs)]


def visible_gpu_slots(jobs: int) -> list[str | None]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return gpu_slots(jobs, visible, 0)
    import torch

    return gpu_slots(jobs, None, torch.cuda.device_count())


# ---------------------------------------------------------------------------------------------- the task

class RunTask:
    """What each submitit job calls: train (or resume) one run, recording its state in its own file.

    It has ``checkpoint``, so when Slurm warns of the time limit submitit requeues the job and the run
    resumes from its last finished epoch (up to three times).
    """

    def __call__(self, root: str, run_id: str, arguments: tuple, needs: list[str], threads: int | None = None,
                 cuda_devices: str | None = None) -> dict:
        if cuda_devices is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = cuda_devices
        if threads:
            os.environ["OMP_NUM_THREADS"] = str(threads)
        state, job_id = ExperimentState.load(Path(root)), _job_id()
        blocked = [need for need in needs if not state.is_done(need)]
        if blocked:
            outcome = {"status": FAILED, "seconds": 0.0,
                       "error": f"needs stage run {blocked[0]}, which failed or did not finish"}
            write_task_state(Path(root), run_id, FAILED, job_id=job_id, error=outcome["error"], seconds=0.0)
            return outcome
        write_task_state(Path(root), run_id, RUNNING, job_id=job_id, host=socket.gethostname(), pid=os.getpid())

        if threads:
            import torch

            torch.set_num_threads(threads)
        try:
            outcome = execute_run(*arguments)
        except KeyboardInterrupt:
            write_task_state(Path(root), run_id, INTERRUPTED, job_id=job_id)
            raise
        details = {k: outcome[k] for k in ("seconds", "error", "test_accuracy") if outcome.get(k) is not None}
        write_task_state(Path(root), run_id, outcome["status"], job_id=job_id, **details)
        return outcome

    def checkpoint(self, *args, **kwargs):
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, *args, **kwargs)


def _job_id() -> str | None:
    try:
        import submitit

        return submitit.JobEnvironment().job_id
    except Exception:  # noqa: BLE001 - only a label for the state file
        return None


# ------------------------------------------------------------------------------------------- job states

def job_states(book: JobBook, run_ids) -> dict[str, str]:
    """The scheduler's word on each run's recorded job: PENDING, RUNNING, ..., a final state (COMPLETED,
    TIMEOUT, ...), ENDED (gone, state unknown) or UNKNOWN (the scheduler did not answer)."""
    jobs = {run_id: book.get(run_id) for run_id in run_ids if book.get(run_id)}
    out = {run_id: _local_state(job["job_id"]) for run_id, job in jobs.items() if job["executor"] != SLURM}
    slurm = {run_id: job for run_id, job in jobs.items() if job["executor"] == SLURM}
    if slurm:
        states = slurm_states([job["job_id"] for job in slurm.values()])
        out.update({run_id: states[job["job_id"]] for run_id, job in slurm.items()})
    return out


def active_runs(root: Path, run_ids: list[str]) -> set[str]:
    """The runs among ``run_ids`` that a live submitit job holds (queued or training)."""
    book = JobBook(root)
    if not book.jobs:
        return set()
    state = ExperimentState.load(root)
    states = job_states(book, run_ids)
    return {run_id for run_id, job_state in states.items()
            if classify(state.runs.get(run_id), book.get(run_id), job_state, False)[0] in (QUEUED, RUNNING)}


def is_active(job_state: str | None) -> bool:
    return job_state is not None and job_state.split()[0] not in FINAL


def _local_state(job_id: str) -> str:
    """A local job's id is the pid of submitit's controller process."""
    try:
        cmdline = Path(f"/proc/{int(job_id)}/cmdline").read_bytes()
    except (OSError, ValueError):
        return "ENDED"
    return "RUNNING" if b"submitit" in cmdline else "ENDED"


def slurm_states(job_ids: list[str]) -> dict[str, str]:
    """squeue for the jobs in the queue (one line per array task), sacct (through submitit) for the rest."""
    queued = _squeue()
    out = {job_id: queued[job_id] for job_id in job_ids if queued is not None and job_id in queued}
    rest = [job_id for job_id in job_ids if job_id not in out]
    if rest and shutil.which("sacct"):
        from submitit.slurm.slurm import SlurmJob

        for job_id in rest:
            SlurmJob.watcher.register_job(job_id)
        SlurmJob.watcher.update()
        out.update({job_id: SlurmJob.watcher.get_state(job_id, mode="cache") for job_id in rest})
    for job_id in rest:
        state = out.get(job_id, "UNKNOWN")
        out[job_id] = "ENDED" if queued is not None and state == "UNKNOWN" else state
    return out


def _squeue() -> dict[str, str] | None:
    """This user's jobs in the queue, or None when squeue cannot be asked."""
    if not shutil.which("squeue"):
        return None
    try:
        text = subprocess.run(["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%i|%T"], capture_output=True,
                              text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return dict(line.split("|", 1) for line in text.splitlines() if "|" in line)


def classify(entry: dict | None, job: dict | None, job_state: str | None, has_summary: bool) -> tuple[str, str | None]:
    """A run's status for `experiment status` and for resubmitting: done, failed, queued, running,
    interrupted or pending, with the error of a failed one."""
    status = (entry or {}).get("status")
    if status == DONE:
        return ("done", None) if has_summary else ("pending", None)
    if job and status in (QUEUED, RUNNING):
        if is_active(job_state):
            return ("running" if status == RUNNING or job_state == "RUNNING" else "queued"), None
        how = "" if job_state in (None, "ENDED") else f" ({job_state.lower()})"
        return FAILED, (f"job {job['job_id']} ended{how} before the run finished: killed, preempted, out of time "
                        f"or out of memory? Its log: {job_log(job)}")
    if status == FAILED:
        return FAILED, entry.get("error")
    return status or "pending", None


def job_log(job: dict) -> Path:
    return Path(job["folder"]) / f"{job['job_id']}_0_log.out"


# ------------------------------------------------------------------------------------------- submission

def submit_runs(executor: str, todo: list, root: Path, experiment, cli_options: dict, jobs: int, wait: bool,
                display) -> ExperimentState:
    """Submit every unfinished run that no live job holds; with ``wait``, follow them to the end."""
    submitit = _import_submitit(executor)
    options = merge_options(experiment.executor, cli_options)
    name = f"txkit-{experiment.name}"
    submitit_parameters(executor, options, name)  # a missing time limit is refused before anything is submitted
    state, book = ExperimentState.load(root), JobBook(root)
    states = job_states(book, [run.id for run in todo])
    active = set()
    for run in todo:
        status, error = classify(state.runs.get(run.id), book.get(run.id), states.get(run.id), False)
        if status in (QUEUED, RUNNING) and book.get(run.id):  # no job: left by a local run that has ended
            active.add(run.id)
        elif status == FAILED and state.status(run.id) != FAILED:  # its job ended without finishing it
            state.mark(run.id, FAILED, error=error, job_id=book.get(run.id)["job_id"])
    if active:
        display.console.print(f"{len(active)} runs are still queued or running in their jobs; not submitted again")
    follower = _Follower(root, book, display)
    follower.watch([run for run in todo if run.id in active])
    submit = _Submission(submitit, executor, root, options, name, book, state, follower)
    to_submit = [run for run in todo if run.id not in active]
    if executor == SLURM:
        submit.slurm_waves(to_submit, active)
    else:
        submit.local(to_submit, active, jobs)
    if wait:
        follower.wait(SLURM_POLL_S if executor == SLURM else LOCAL_POLL_S)
    return ExperimentState.load(root)


def _import_submitit(executor: str):
    try:
        import submitit
    except ImportError:
        raise TxkitError(f"--executor {executor} needs submitit: pip install 'txkit[slurm]'") from None
    return submitit


class _Submission:
    def __init__(self, submitit, executor: str, root: Path, options: dict, name: str, book: JobBook,
                 state: ExperimentState, follower: _Follower):
        self.submitit, self.executor, self.root, self.options, self.name = submitit, executor, root, options, name
        self.book, self.state, self.follower = book, state, follower
        self.folder = root / JOB_LOGS

    def slurm_waves(self, runs: list, active: set[str]) -> None:
        """One job array per wave; a wave depends on the array tasks of the stages its runs read."""
        pending, wave_of = {run.id for run in runs}, {}
        for run in runs:  # the plan lists every run after the runs it needs
            wave_of[run.id] = max([wave_of[need] + 1 for need in run.needs if need in pending], default=0)
        for wave in range(max(wave_of.values(), default=-1) + 1):
            members = [run for run in runs if wave_of[run.id] == wave]
            needs = {need for run in members for need in run.needs if need in pending or need in active}
            dependency = sorted(self.book.get(need)["job_id"] for need in needs)
            executor = self._executor("slurm", submitit_parameters(SLURM, self.options, self.name, dependency))
            self._submit(executor, members, self.options.get("cpus_per_task"), [None] * len(members))

    def local(self, runs: list, active: set[str], jobs: int) -> None:
        """At most ``jobs`` at a time, each once the stages it reads are done, one GPU per slot."""
        gpus, threads = visible_gpu_slots(jobs), max(1, (os.cpu_count() or 1) // jobs)
        executor = self._executor("local", submitit_parameters(SUBMITIT_LOCAL, self.options, self.name))
        waiting, slots = list(runs), {}
        while waiting:
            slots = {slot: (run, job) for slot, (run, job) in slots.items() if not job.done()}
            others = {run_id for run_id, job_state in job_states(self.book, active).items() if is_active(job_state)}
            unfinished = {run.id for run in waiting} | {run.id for run, _ in slots.values()} | others
            for run in [run for run in waiting if not set(run.needs) & unfinished]:
                free = [slot for slot in range(jobs) if slot not in slots]
                if not free:
                    break
                slots[free[0]] = (run, self._submit(executor, [run], threads, [gpus[free[0]]])[0])
                waiting.remove(run)
            self.follower.poll()
            if waiting:
                time.sleep(LOCAL_POLL_S)

    def _executor(self, cluster: str, params: dict):
        try:
            executor = self.submitit.AutoExecutor(folder=self.folder, cluster=cluster)
        except RuntimeError as exc:  # submitit's "Could not detect srun": not on a Slurm cluster
            raise TxkitError(f"--executor slurm: {exc} Run the command on a Slurm login node, or use --executor "
                             f"submitit-local on this machine") from None
        executor.update_parameters(**params)
        return executor

    def _submit(self, executor, runs: list, threads: int | None, gpus: list[str | None]) -> list:

        n = len(runs)
        try:
            with _detached_output(self.executor != SLURM):
                jobs = executor.map_array(RunTask(), [str(self.root)] * n, [run.id for run in runs],
                                          [run_arguments(run, self.root) for run in runs],
                                          [run.needs for run in runs], [threads] * n, gpus)
        except Exception as exc:  # noqa: BLE001 - sbatch's refusal (bad partition, account, ...) as one line
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            raise TxkitError(f"submitting {n} runs failed: {lines[-1] if lines else type(exc).__name__}; "
                             f"runs submitted before are recorded in {self.book.path}") from None
        ids = [job.job_id for job in jobs]
        self.book.record([run.id for run in runs], ids, self.executor, self.folder)
        for run, job_id in zip(runs, ids):
            self.state.mark(run.id, QUEUED, kind=run.kind, directory=run.directory, job_id=job_id)
        self.follower.watch(runs)
        return jobs


@contextmanager
def _detached_output(detach: bool):
    """submitit's local controller processes inherit stdout and stderr (their tasks write to the job logs):
    they get /dev/null, so `txkit experiment run ... | tee` ends when the command does, not when the jobs do."""
    if not detach:
        yield
        return
    saved, null = [os.dup(1), os.dup(2)], os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        yield
    finally:
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)
        os.close(null)


class _Follower:
    """Reads the runs' states (and their jobs') back, printing a line per run that finished."""

    def __init__(self, root: Path, book: JobBook, display):
        self.root, self.book, self.display = root, book, display
        self.runs: dict[str, object] = {}
        self.started: set[str] = set()

    def watch(self, runs: list) -> None:
        self.runs.update({run.id: run for run in runs})

    def poll(self) -> None:
        state = ExperimentState.load(self.root)
        states = job_states(self.book, list(self.runs))
        for run_id, run in list(self.runs.items()):
            entry = state.runs.get(run_id)
            status, error = classify(entry, self.book.get(run_id), states.get(run_id), True)
            if status == RUNNING and run_id not in self.started:
                self.started.add(run_id)
                self.display.started(run)
            if status in (DONE, FAILED):
                if status == FAILED and entry.get("status") != FAILED:
                    state.mark(run_id, FAILED, error=error, job_id=self.book.get(run_id)["job_id"])
                self.display.finished(run, {**entry, "status": status, "error": error})
                del self.runs[run_id]

    def wait(self, every: float) -> None:
        while self.runs:
            self.poll()
            if self.runs:
                time.sleep(every)


# ------------------------------------------------------------------------ local: this process or a process pool

class Display(Protocol):
    """What the local executor reports to (the runner's GridProgress)."""

    def started(self, run: PlannedRun) -> None: ...

    def finished(self, run: PlannedRun, outcome: dict) -> None: ...


def run_here(todo: list[PlannedRun], state: ExperimentState, root: Path, display: Display) -> None:
    for run in todo:
        if _skip_if_blocked(run, state, display):
            continue
        state.mark(run.id, RUNNING, kind=run.kind, directory=run.directory)
        display.started(run)
        try:
            outcome = execute_run(*run_arguments(run, root))
        except KeyboardInterrupt:
            state.mark(run.id, INTERRUPTED)
            raise
        _record(run, outcome, state, display)


def run_in_pool(todo: list[PlannedRun], state: ExperimentState, root: Path, display: Display,
                 jobs: int) -> None:
    import multiprocessing

    threads = max(1, (os.cpu_count() or 1) // jobs)
    # spawn, not fork: forking a process that already ran torch's thread pools can deadlock the children.
    context = multiprocessing.get_context("spawn")
    gpus = context.Queue()  # each worker takes one slot's CUDA_VISIBLE_DEVICES (round-robin over the GPUs)
    for slot in visible_gpu_slots(jobs):
        gpus.put(slot)
    pool = ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_worker, initargs=(threads, gpus))
    waiting, active = list(todo), {}
    try:
        while waiting or active:
            _submit_ready(pool, waiting, active, jobs, state, root, display)
            if not active:
                break
            finished, _ = wait(active, return_when=FIRST_COMPLETED)
            for future in finished:
                _record(active.pop(future), future.result(), state, display)
    except (KeyboardInterrupt, BrokenProcessPool):
        for run in active.values():
            state.mark(run.id, INTERRUPTED)
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _submit_ready(pool, waiting: list[PlannedRun], active: dict, jobs: int, state: ExperimentState, root: Path,
                  display: Display) -> None:
    for run in list(waiting):
        if len(active) >= jobs:
            return
        if _skip_if_blocked(run, state, display):
            waiting.remove(run)
        elif all(state.is_done(need) for need in run.needs):
            waiting.remove(run)
            state.mark(run.id, RUNNING, kind=run.kind, directory=run.directory)
            display.started(run)
            active[pool.submit(execute_run, *run_arguments(run, root))] = run


def _init_worker(threads: int, gpus) -> None:
    _die_with_parent()
    os.environ["OMP_NUM_THREADS"] = str(threads)
    gpu = gpus.get()
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    import torch

    torch.set_num_threads(threads)


def _die_with_parent() -> None:
    """On Linux a worker is killed with its parent, so a killed experiment leaves no run training behind
    that the next `experiment run` would resume at the same time."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def _skip_if_blocked(run: PlannedRun, state: ExperimentState, display: Display) -> bool:
    """A run whose earlier stage failed fails too, without training."""
    failed = [need for need in run.needs if state.status(need) == FAILED]
    if not failed:
        return False
    outcome = {"status": FAILED, "error": f"needs stage run {failed[0]}, which failed", "seconds": 0.0}
    state.mark(run.id, FAILED, kind=run.kind, directory=run.directory, error=outcome["error"])
    display.finished(run, outcome)
    return True


def _record(run: PlannedRun, outcome: dict, state: ExperimentState, display: Display) -> None:
    details = {k: outcome[k] for k in ("seconds", "error", "test_accuracy") if outcome.get(k) is not None}
    state.mark(run.id, outcome["status"], **details)
    display.finished(run, outcome)
