"""What every tab's handlers share: the runner and components of one board process, the path roots they check,
the argument checks before a job starts. The per-tab handlers (webui/handlers/<tab>.py) are mixins over this."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from core.paths import saves_dir
from webui.args import validate as validate_args
from webui.handlers.events import Alerts, Values
from webui.manager import Manager, alert
from webui.paths import PathRefused, Roots, board_roots, secret_problems

logger = logging.getLogger(__name__)


class BoardBase:
    """The state the handlers of one board process share. `runner` is the only owner of job processes;
    `manager` holds the components by "tab.elem" key; `saves_root` is where runs are listed."""

    def __init__(self, runner: Any, manager: Manager | None = None, saves_root: Path | None = None) -> None:
        self.runner = runner
        self.manager = manager if manager is not None else Manager()
        self.saves_root = Path(saves_root) if saves_root else saves_dir()
        self._watchers: dict[str, Any] = {}  # run folder -> its readers (webui.handlers.live.Watcher)
        self._lock = threading.Lock()

    def guard(self, args: dict[str, Any], values: Values) -> tuple[dict[str, Any] | None, Alerts]:
        """`args` when nothing in them may leak or reach outside the roots (webui.paths), with trust_remote_code
        and trust_reward_file as the job's checkboxes say; else None and the alerts that say why."""
        lang = values.get("top.lang")
        if values.get("train.trust_remote_code"):
            args["trust_remote_code"] = True
        elif args.get("trust_remote_code"):
            return None, [("warning", alert(lang, "remote_code_off"))]
        # grpo's reward file is Python the job imports: only this job's checkbox lets it run (a loaded YAML's or
        # extra_args' trust_reward_file does not).
        args.pop("trust_reward_file", None)
        if args.get("reward_file"):
            if not values.get("train.trust_reward_file"):
                return None, [("warning", alert(lang, "reward_code_off", path=args["reward_file"]))]
            args["trust_reward_file"] = True
        problems = secret_problems(args) + self.roots().check_args(args)
        if problems:
            return None, [("warning", alert(lang, "path_refused", problems="\n".join(problems)))]
        return args, []

    def roots(self) -> Roots:
        """The board's roots plus its runner's saves folder, which is where the board writes runs by definition."""
        return board_roots([self.runner.saves_root])

    def check_path(self, values: Values, path: Any, field: str, write: bool = False) -> Alerts:
        """[] when `path` lies under the board's roots, else the alert that refuses it."""
        try:
            self.roots().check(path, field, write=write)
        except PathRefused as err:
            return [("warning", alert(values.get("top.lang"), "path_refused", problems=err))]
        return []

    def validate(self, args: dict[str, Any]) -> list[str]:
        try:
            return list(validate_args(args))
        except Exception as err:  # a checker bug must not hide the form; report it as a problem
            logger.exception("Validation crashed")
            return [f"{type(err).__name__}: {err}"]


def value_of(update: Any, default: Any) -> Any:
    """The value an update sets (a plain value or a gr.update dict), else `default`."""
    if isinstance(update, dict):
        return update.get("value", default)
    return default if update is None else update


def resolved(path: Any) -> str | None:
    """Run folders compare as resolved paths (the runner resolves them; /tmp may be a symlink)."""
    return str(Path(str(path)).resolve()) if path else None
