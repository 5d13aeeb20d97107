"""What every tab's handlers share: the runner and components of one board process, the path roots they check,
the argument checks before a job starts. The per-tab handlers (webui/handlers/<tab>.py) are mixins over this.

Every field that names a file or folder is listed in PATH_FIELDS, with how the board turns its value into a path
(a run name lies under the model's saves folder, a checkpoint under it too). `field_problems` checks them against
the board's roots; `webui.handlers.events.bind` runs it on every event's inputs before the handler, so no handler
of any tab sees a path outside the roots. The other free-text fields are listed in TEXT_FIELDS with why they are
no path; tests/webui/test_fields.py fails on a text field in neither list, so a new field cannot skip the check.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from core.paths import saves_dir
from webui.args import saves_folder
from webui.args import validate as validate_args
from webui.handlers.events import Alerts, Values
from webui.manager import Manager, alert
from webui.paths import PathRefused, Roots, board_roots, secret_problems

logger = logging.getLogger(__name__)

PATH_FIELDS: dict[str, tuple[str, str, bool]] = {
    # "tab.elem": (the argument or name it is checked as, how its value becomes paths, written to)
    "top.model_path": ("model_name_or_path", "args", False),
    "top.checkpoint_path": ("checkpoint_path", "saved", False),
    "train.dataset_dir": ("dataset_dir", "args", False),
    "train.reward_model": ("reward_model", "saved", False),
    "train.extra_args": ("extra_args", "json", False),
    "train.reward_file": ("reward_file", "plain", False),
    "train.output_dir": ("run_name", "run", True),
    "train.config_path": ("config_path", "plain", False),
    "train.view_run": ("view_run", "plain", False),
    "eval.dataset_dir": ("dataset_dir", "args", False),
    "eval.output_dir": ("output_dir", "run", True),
    "eval.view_run": ("view_run", "plain", False),
    "chat.compare_path": ("compare_path", "saved", False),
    "export.export_dir": ("export_dir", "plain", True),
    "export.view_run": ("view_run", "plain", False),
    "data.dataset_dir": ("dataset_dir", "args", False),
    "data.source_path": ("source_path", "plain", False),
}
"""The fields whose value names a file or folder. `args`: checked as that argument (a hub id passes where one may
stand); `saved`: entries taken under the top bar model's saves folder unless absolute; `run`: a run name under that
folder; `json`: every path-valued key of the JSON object; `plain`: the path as typed, from the working directory.
The handlers check some of these again where they use them (config_path is written, so Save checks it writable)."""

TEXT_FIELDS: dict[str, str] = {
    "top.model_name": "a name from the model list (Custom for a local folder, given in model_path)",
    "top.template": "a chat template's name",
    "train.dataset": "dataset names registered in dataset_dir's dataset_info.json",
    "train.freeze_trainable_modules": "module names",
    "train.freeze_extra_modules": "module names",
    "train.lora_target": "module names",
    "train.additional_target": "module names",
    "train.oft_target": "module names",
    "train.report_to": "tracker names",
    "train.reward_funcs": "reward function names (built-in, or defined in reward_file)",
    "runs.text": "a search text for the runs table",
    **{f"train.sweep_key{i}": "an argument name (the sweep varies it)" for i in (1, 2, 3)},
    **{
        f"train.sweep_values{i}": "comma-separated values; each member's arguments are checked like Start's"
        for i in (1, 2, 3)
    },
    "train.reward_weights": "a comma list of numbers, one per reward function",
    "eval.dataset": "dataset names registered in eval's dataset_dir",
    "chat.system": "a system prompt",
    "chat.tools": "a JSON list of tool schemas",
    "chat.query": "a chat message",
    "chat.info": "read only: the loading steps",
    "export.export_hub_model_id": "a hub repository id, pushed to with HF_TOKEN",
    "train.output_box": "read only: the log box",
    "eval.output_box": "read only: the log box",
    "export.output_box": "read only: the log box",
    "data.tags": "a JSON object of sharegpt / openai tag names (role_tag, user_tag, ...)",
    "data.name": "the name to register the dataset under in dataset_info.json",
    "data.match": "a regular expression rows must match",
    "data.exclude": "a regular expression rows must not match",
    "data.new_name": "the name of the curated dataset in dataset_info.json",
}
"""Free-text fields that are no path, and why. A field that reaches a file must be in PATH_FIELDS instead."""


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

    def field_problems(self, values: Values, keys: Iterable[str] | None = None) -> list[str]:
        """What is wrong with the PATH_FIELDS among `keys` (default: all in `values`): each a line naming the field
        as the user knows it, the path and the roots. A value that is not a path at all (bad JSON in extra_args, a
        run name with '/') is left to the handler, which says what is wrong with it."""
        keys = [key for key in sorted(values if keys is None else keys) if key in PATH_FIELDS and key in values]
        roots = self.roots() if keys else None  # a few stat calls: only for events that carry a path
        problems: list[str] = []
        for key in keys:
            name, kind, write = PATH_FIELDS[key]
            for path in self._field_paths(values, key, kind):
                try:
                    if kind in ("args", "json"):
                        found = roots.check_args(path)
                    else:
                        roots.check(path, name, write=write)
                        found = []
                except PathRefused as err:
                    found = [str(err)]
                problems.extend(problem for problem in found if problem not in problems)
        return problems

    def _field_paths(self, values: Values, key: str, kind: str) -> list[Any]:
        """The paths (or, for `args` and `json`, argument dicts) a field's value stands for."""
        value = values.get(key)
        entries = [str(entry) for entry in value] if isinstance(value, (list, tuple)) else [str(value or "")]
        entries = [entry.strip() for entry in entries if entry.strip()]
        name, _, _ = PATH_FIELDS[key]
        if kind == "args":
            return [{name: entry} for entry in entries]
        if kind == "json":
            try:
                extra = json.loads(entries[0]) if entries else {}
            except (json.JSONDecodeError, RecursionError):
                return []
            return [extra] if isinstance(extra, dict) else []
        if kind == "plain":
            return entries
        folder = self.runs_folder(values)
        return [entry if os.path.isabs(entry) else str(folder / entry) for entry in entries]

    def refusal(self, values: Values, keys: Iterable[str] | None = None) -> Alerts:
        """[] when the text of every field among `keys` (default: all in `values`) can be stored and every path field
        among them lies under the roots, else the one alert that refuses them."""
        keys = sorted(values if keys is None else keys)
        problems = text_problems(values, keys) or self.field_problems(values, keys)
        if not problems:
            return []
        return [("warning", alert(values.get("top.lang"), "path_refused", problems="\n".join(problems)))]

    def validate(self, args: dict[str, Any]) -> list[str]:
        try:
            return list(validate_args(args))
        except Exception as err:  # a checker bug must not hide the form; report it as a problem
            logger.exception("Validation crashed")
            return [f"{type(err).__name__}: {err}"]


def text_problems(values: Values, keys: Iterable[str]) -> list[str]:
    """Fields among `keys` whose text is not valid Unicode (a lone surrogate, as a browser or client may send for
    bytes that were not UTF-8): such text cannot be written to job.yaml, a log or a chat worker, so it is refused
    here, naming the field, instead of failing later where the file is written."""
    problems = []
    for key in keys:
        value = values.get(key)
        for text in value if isinstance(value, (list, tuple)) else [value]:
            if not isinstance(text, str):
                continue
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as err:
                problems.append(
                    f"{key.split('.', 1)[-1]}: the text holds a character that is not valid Unicode "
                    f"({text[err.start]!r} at position {err.start}, often a byte of a file that is not UTF-8); "
                    "remove it or retype the text."
                )
                break
    return problems


def value_of(update: Any, default: Any) -> Any:
    """The value an update sets (a plain value or a gr.update dict), else `default`."""
    if isinstance(update, dict):
        return update.get("value", default)
    return default if update is None else update


def resolved(path: Any) -> str | None:
    """Run folders compare as resolved paths (the runner resolves them; /tmp may be a symlink)."""
    if not path:
        return None
    try:
        return str(Path(str(path)).resolve())
    except (OSError, ValueError):  # a NUL, a loop: no run folder, compared as typed
        return str(path)
