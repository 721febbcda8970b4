"""Where orch keeps its files: ORCH_HOME=DIR puts everything under DIR, else XDG."""

from __future__ import annotations

import os
from collections import namedtuple

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see Paths)
if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

SOCKET = "orchd.sock"


# A named tuple, not a dataclass: this module is on the CLI's fast path (orchctl/fast.py), where
# importing dataclasses and typing would cost 9 ms of a 60 ms budget.
class Paths(namedtuple("Paths", ["config_dir", "state_dir", "runtime_dir"])):
    """The directories and files of one orch installation (each a Path)."""

    __slots__ = ()
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
        return self.runtime_dir / SOCKET

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


def _dirs(env: Mapping[str, str]) -> tuple[str, str, str]:
    """(config, state, runtime) directories from ORCH_HOME, or from the XDG base directories."""
    home = env.get("ORCH_HOME")
    if home:
        root = os.path.abspath(os.path.expanduser(home))
        return os.path.join(root, "config"), os.path.join(root, "state"), os.path.join(root, "run")
    user_home = env.get("HOME") or os.path.expanduser("~")
    config = os.path.join(env.get("XDG_CONFIG_HOME") or os.path.join(user_home, ".config"), "orch")
    state = os.path.join(
        env.get("XDG_STATE_HOME") or os.path.join(user_home, ".local", "state"), "orch"
    )
    runtime_base = env.get("XDG_RUNTIME_DIR")
    runtime = os.path.join(runtime_base, "orch") if runtime_base else os.path.join(state, "run")
    return config, state, runtime


def resolve(env: Mapping[str, str] | None = None) -> Paths:
    """Paths from ORCH_HOME, or from the XDG base directories."""
    from pathlib import Path  # here, not at the top: the CLI's fast path needs only socket_path()

    config, state, runtime = _dirs(os.environ if env is None else env)
    return Paths(Path(config), Path(state), Path(runtime))


def socket_path(env: Mapping[str, str] | None = None) -> str:
    """The daemon's socket, as `resolve().socket` names it, without importing pathlib."""
    return os.path.join(_dirs(os.environ if env is None else env)[2], SOCKET)
