"""A throw-away single-node SLURM cluster on 127.0.0.1, for tests that submit real sbatch jobs.

Everything lives in one temporary directory: the munge key and socket, ``slurm.conf``, the state,
spool and log directories. The daemons (``munged``, ``slurmctld``, ``slurmd``) run in the foreground
as children of the test process, so their PIDs are known and :meth:`LocalSlurm.stop` ends exactly
them (SIGTERM, then SIGKILL after a timeout) - never anything found by name, which on a shared
machine could belong to someone else.

Rules that keep the cluster private to the machine and to this test run:

* ``SLURM_CONF`` is set in :meth:`LocalSlurm.env` and every slurm command is run with it; without it
  slurm looks for its configuration through DNS SRV records and contacts an off-machine address.
* every address is 127.0.0.1 (``SlurmctldHost=<host>(127.0.0.1)``, ``NodeAddr=127.0.0.1``, munged's
  ``--origin``), and ``CommunicationParameters=NoCtldInAddrAny,NoInAddrAny`` binds to it only;
* the controller and node ports are free ports picked at start, so parallel runs do not collide.

The settings are the ones DESIGN.md lists as verified with Debian bookworm's ``slurm-wlm`` 22.05,
plus two that only make requeued jobs start again within seconds instead of minutes:
``AuthInfo=...,cred_expire=5`` (a requeued job may not start before its old credential expires,
120 s by default; 5 is accepted here, 2 is refused) and ``SchedulerParameters=sched_interval=2``.
Job processes inherit ``SLURM_CONF`` from the submitting environment; :meth:`LocalSlurm.stop` also
ends any leftover process whose environment carries this cluster's ``SLURM_CONF`` (job steps detach
from slurmd, so they are not its children), again by PID.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.apt import install
from tests.support import free_port

PACKAGES = ("slurm-wlm", "munge")
TOOLS = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "scontrol")
FINAL_STATES = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE",
                "PREEMPTED")  # fmt: skip


class SlurmError(RuntimeError):
    pass


def missing_tools() -> list[str]:
    return [name for name in TOOLS if shutil.which(name) is None and not Path("/usr/sbin", name).exists()]


def ensure_installed() -> None:
    """Install Debian's slurm-wlm and munge when they are missing (needs root; ~10 s)."""
    result = install(PACKAGES, lambda: not missing_tools())
    if missing_tools():
        output = f"{result.stdout[-2000:]}{result.stderr[-2000:]}" if result else ""
        raise SlurmError(f"could not install {' '.join(PACKAGES)}:\n{output}")


def _tool(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


class LocalSlurm:
    """One controller and one node (this machine, ``cpus`` CPUs) under ``root``; use as a context manager."""

    def __init__(self, root: Path, cpus: int | None = None) -> None:
        self.root = root
        self.cpus = cpus or os.cpu_count() or 1
        self.node = socket.gethostname().split(".")[0]  # slurmctld insists on its own short host name
        self.conf = root / "slurm.conf"
        self.log_dir = root / "log"
        self.jobcomp = self.log_dir / "jobcomp.txt"
        self.munge_dir = root / "munge"
        self.munge_socket = self.munge_dir / "run" / "munge.socket"
        self._processes: dict[str, subprocess.Popen] = {}
        self._logs: list = []

    # ----- set-up -------------------------------------------------------------------------------

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """An environment for slurm commands (and for jobs: sbatch exports it) that uses this cluster."""
        env = dict(os.environ if base is None else base)
        for key in [k for k in env if k.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_"))]:
            del env[key]  # nothing from an enclosing allocation may leak into our commands
        env["SLURM_CONF"] = str(self.conf)
        return env

    def _write_munge(self) -> None:
        munge = pwd.getpwnam("munge")
        for path, mode in ((self.munge_dir, 0o755), (self.munge_dir / "run", 0o711), (self.munge_dir / "log", 0o700),
                           (self.munge_dir / "lib", 0o700)):  # fmt: skip
            path.mkdir(parents=True, exist_ok=True)
            os.chown(path, munge.pw_uid, munge.pw_gid)
            path.chmod(mode)
        key = self.munge_dir / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chown(key, munge.pw_uid, munge.pw_gid)
        key.chmod(0o400)

    def _write_conf(self) -> None:
        for name in ("state", "spool", "log"):
            (self.root / name).mkdir(parents=True, exist_ok=True)
        (self.root / "plugstack.conf").write_text("")
        r, node = self.root, self.node
        self.ctld_port, self.slurmd_port = free_port(), free_port()
        lines = [
            f"ClusterName=sattest{os.getpid()}",
            f"SlurmctldHost={node}(127.0.0.1)",
            f"SlurmctldPort={self.ctld_port}",
            f"SlurmdPort={self.slurmd_port}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            # cred_expire: how long a requeued job waits before it may start again (default 120 s)
            f"AuthInfo=socket={self.munge_socket},cred_expire=5",
            f"StateSaveLocation={r}/state",
            f"SlurmdSpoolDir={r}/spool",
            f"SlurmctldPidFile={r}/slurmctld.pid",
            f"SlurmdPidFile={r}/slurmd.pid",
            f"SlurmctldLogFile={r}/log/slurmctld.log",
            f"SlurmdLogFile={r}/log/slurmd.log",
            f"PlugStackConfig={r}/plugstack.conf",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/filetxt",
            f"JobCompLoc={self.jobcomp}",
            "CommunicationParameters=NoCtldInAddrAny,NoInAddrAny",
            "SchedulerParameters=batch_sched_delay=0,sched_interval=2",  # requeued jobs start promptly
            "MinJobAge=4",
            "MailProg=/bin/true",
            "ReturnToService=2",
            "MpiDefault=none",
            "KillWait=30",
            f"NodeName={node} NodeAddr=127.0.0.1 CPUs={self.cpus} State=UNKNOWN",
            f"PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP",
        ]
        self.conf.write_text("\n".join(lines) + "\n")

    def _spawn(self, name: str, command: Sequence[str], **kwargs) -> None:
        log = open(self.log_dir / f"{name}.stdout", "ab")
        self._logs.append(log)
        self._processes[name] = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env(), **kwargs
        )

    def start(self, timeout: float = 60) -> LocalSlurm:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)  # munged runs as the munge user and must reach its files below root
        for parent in self.root.resolve().parents:
            if not parent.stat().st_mode & 0o001:
                raise SlurmError(f"{parent} is not searchable by other users, so munged cannot reach {self.root}: "
                                 "put the cluster directory elsewhere (e.g. tempfile.mkdtemp() under /tmp)")
        self._write_munge()
        self._write_conf()
        m = self.munge_dir
        munge = pwd.getpwnam("munge")
        self._spawn("munged", [
            _tool("munged"), "--foreground", "--force", f"--socket={self.munge_socket}", f"--key-file={m}/munge.key",
            f"--log-file={m}/log/munged.log", f"--pid-file={m}/run/munged.pid", f"--seed-file={m}/lib/munged.seed",
            "--origin=127.0.0.1",
        ], user=munge.pw_uid, group=munge.pw_gid, extra_groups=[])  # fmt: skip
        self._wait_for(lambda: self.munge_socket.exists(), timeout, "munged socket")
        self._spawn("slurmctld", [_tool("slurmctld"), "-D", "-f", str(self.conf)])
        self._spawn("slurmd", [_tool("slurmd"), "-D", "-f", str(self.conf), "-N", self.node])
        self._wait_for(lambda: self._node_state() == "idle", timeout, "node to become idle in sinfo")
        return self

    def _wait_for(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, process in self._processes.items():
                if process.poll() is not None:
                    raise SlurmError(f"{name} exited with {process.returncode} while waiting for {what}\n{self.logs()}")
            if ready():
                return
            time.sleep(0.2)
        raise SlurmError(f"timed out after {timeout:.0f} s waiting for {what}\n{self.logs()}")

    def _node_state(self) -> str:
        result = self.run(["sinfo", "--noheader", "--format=%t", "--nodes", self.node], check=False)
        return result.stdout.strip().rstrip("*~#!%$@^-")

    # ----- using it -----------------------------------------------------------------------------

    def run(self, command: Sequence[str], env: Mapping[str, str] | None = None, check: bool = True,
            timeout: float = 60) -> subprocess.CompletedProcess:  # fmt: skip
        """Run a slurm client command (sinfo, sbatch, scontrol ...) against this cluster only."""
        full_env = self.env(env)
        result = subprocess.run(list(command), env=full_env, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise SlurmError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
        return result

    def sbatch(self, script: Path, options: Sequence[str] = (), env: Mapping[str, str] | None = None,
               args: Sequence[str] = ()) -> str:  # fmt: skip
        """Submit ``script`` (unchanged) with extra sbatch ``options`` and script ``args``; returns the job id."""
        result = self.run(["sbatch", "--parsable", *options, str(script), *args], env=env)
        return result.stdout.strip().split(";")[0]

    def job_info(self, job_id: str) -> dict[str, str]:
        """``scontrol show job`` as a dict; empty once the job has left the controller (MinJobAge)."""
        result = self.run(["scontrol", "--oneliner", "show", "job", job_id], check=False)
        if result.returncode != 0:
            return {}
        return dict(re.findall(r"(\w+)=(\S*)", result.stdout))

    def completions(self, job_id: str) -> list[dict[str, str]]:
        """Every end of ``job_id`` recorded by jobcomp/filetxt (one per run, requeues included)."""
        if not self.jobcomp.exists():
            return []
        records = [dict(re.findall(r"(\w+)=(\S*)", line)) for line in self.jobcomp.read_text().splitlines()]
        return [r for r in records if r.get("JobId") == job_id]

    def wait_finished(self, job_id: str, timeout: float, poll: float = 1.0) -> dict[str, str]:
        """Wait until the job has ended for good (not pending, running or requeued); its last jobcomp record."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.job_info(job_id).get("JobState", "")
            if state == "" or state in FINAL_STATES:  # "": the controller has already forgotten the job
                # jobcomp writes one line per run; a requeued run's line has the state after requeue
                ends = [r for r in self.completions(job_id) if r.get("JobState") in FINAL_STATES]
                if ends:
                    return ends[-1]
            time.sleep(poll)
        raise SlurmError(f"job {job_id} did not finish within {timeout:.0f} s: {self.job_info(job_id)}\n{self.logs()}")

    def logs(self, tail: int = 3000) -> str:
        parts = []
        for path in sorted(self.log_dir.glob("*")) + sorted((self.munge_dir / "log").glob("*")):
            try:
                parts.append(f"--- {path.name} ---\n{path.read_text(errors='replace')[-tail:]}")
            except OSError:
                pass
        return "\n".join(parts)

    # ----- tear-down ----------------------------------------------------------------------------

    def _our_job_processes(self) -> list[int]:
        """PIDs of processes (job steps, their children) whose environment names this cluster's SLURM_CONF."""
        marker = f"SLURM_CONF={self.conf}".encode()
        mine = {os.getpid(), *(p.pid for p in self._processes.values())}
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) in mine:
                continue
            try:
                if _parent(entry) in mine:
                    continue  # a daemon's own helper (slurmctld's slurmscriptd): it goes with its daemon
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
        return found

    @staticmethod
    def _terminate(pids: Sequence[int], timeout: float) -> None:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        alive = list(pids)
        while alive and time.monotonic() < deadline:
            alive = [pid for pid in alive if Path(f"/proc/{pid}").exists() and not _is_zombie(pid)]
            time.sleep(0.1)
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def stop(self, timeout: float = 15) -> None:
        """Cancel every job, then stop slurmd, slurmctld and munged by PID; safe to call more than once."""
        if self._processes.get("slurmctld") and self._processes["slurmctld"].poll() is None:
            try:
                self.run(["scancel", "--partition", "debug"], check=False, timeout=15)
            except (subprocess.TimeoutExpired, OSError):
                pass
            deadline = time.monotonic() + timeout
            while self._our_job_processes() and time.monotonic() < deadline:
                time.sleep(0.2)
        self._terminate(self._our_job_processes(), timeout=5)
        for name in ("slurmd", "slurmctld", "munged"):
            process = self._processes.get(name)
            if process is None or process.poll() is not None:
                continue
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
        self._terminate(self._our_job_processes(), timeout=5)  # anything a dying slurmd left behind
        for log in self._logs:
            log.close()
        self._logs.clear()

    def __enter__(self) -> LocalSlurm:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc_info) -> None:
        self.stop()


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def _parent(proc_entry: Path) -> int:
    return int((proc_entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
