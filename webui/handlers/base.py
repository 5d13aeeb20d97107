"""What every tab's handlers share: the runner and components of one board process, the path roots they check,
the argument checks before a job starts. The per-tab handlers (webui/handlers/<tab>.py) are mixins over this."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from core.paths import saves_dir
from webui.args import saves_folder
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
        as the job's checkbox says; else None and the alerts that say why."""
        lang = values.get("top.lang")
        if values.get("train.trust_remote_code"):
            args["trust_remote_code"] = True
        elif args.get("trust_remote_code"):
            return None, [("warning", alert(lang, "remote_code_off"))]
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

    def runs_folder(self, values: Values) -> Path:
        """saves/<model>/<method> of the top bar's model: where Train and Evaluate put a new run."""
        form = {name: values.get(f"top.{name}") for name in ("model_name", "model_path")}
        form["finetuning_type"] = values.get("top.finetuning_type") or "lora"
        return saves_folder(form, self.saves_root)

    def fresh_names(self, values: Values) -> dict[str, str]:
        """Default Output dir (Train, Evaluate) and Export dir naming folders that do not exist: at every page load,
        after every Start, and after a YAML is saved or exported (that YAML's run will use the name it holds)."""
        from webui.handlers.choices import default_eval_name, default_export_dir, new_run_name

        folder = self.runs_folder(values)
        names = {"train.output_dir": new_run_name(folder), "eval.output_dir": default_eval_name(folder)}
        names["export.export_dir"] = default_export_dir()
        return {key: value for key, value in names.items() if key in self.manager}

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
