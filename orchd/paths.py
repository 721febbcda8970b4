"""Where orch keeps its files: ORCH_HOME=DIR puts everything under DIR, else XDG."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Paths:
    """The directories and files of one orch installation."""

    config_dir: Path
    state_dir: Path
    runtime_dir: Path

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"

    @property
    def db(self) -> Path:
        return self.state_dir / "events.db"

    @property
    def logs(self) -> Path:
        return self.state_dir / "logs"

    @property
    def worktrees(self) -> Path:
        """worktrees/RUN/TASK: the git worktrees of isolated tasks."""
        return self.state_dir / "worktrees"

    @property
    def daemon_log(self) -> Path:
        return self.state_dir / "orchd.log"

    @property
    def lock(self) -> Path:
        return self.runtime_dir / "orchd.lock"

    @property
    def socket(self) -> Path:
        return self.runtime_dir / "orchd.sock"

    @property
    def keeper(self) -> Path:
        """The keeper's socket (orchd/keeper.py): the parent of every local attempt."""
        return self.runtime_dir / "keeper.sock"

    @property
    def address(self) -> str:
        return f"ipc://{self.socket}"

    def attempt_log(self, run_id: str, task_id: str, attempt: int) -> Path:
        """logs/RUN/TASK.ATTEMPT.log: one directory per run (a directory per task costs a mkdir each)."""
        return self.logs / run_id / f"{task_id}.{attempt}.log"

    def ensure(self) -> None:
        """Create the directories; the runtime one (socket) is 0700."""
        for d in (self.config_dir, self.state_dir, self.logs):
            d.mkdir(parents=True, exist_ok=True)
        self.runtime_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.runtime_dir, 0o700)


def resolve(env: dict[str, str] | None = None) -> Paths:
    """Paths from ORCH_HOME, or from the XDG base directories."""
    env = dict(os.environ) if env is None else env
    home = env.get("ORCH_HOME")
    if home:
        root = Path(home).expanduser().absolute()
        return Paths(root / "config", root / "state", root / "run")
    user_home = Path(env.get("HOME") or Path.home())
    config = Path(env.get("XDG_CONFIG_HOME") or user_home / ".config") / "orch"
    state = Path(env.get("XDG_STATE_HOME") or user_home / ".local" / "state") / "orch"
    runtime_base = env.get("XDG_RUNTIME_DIR")
    runtime = Path(runtime_base) / "orch" if runtime_base else state / "run"
    return Paths(config, state, runtime)
