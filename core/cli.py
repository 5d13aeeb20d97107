"""The command line: `llamafactory-cli <command> ...`, the same as `python -m core.cli <command> ...`.

    llamafactory-cli train examples/sft_lora.yaml learning_rate=1e-4 lora_rank=16
    llamafactory-cli webui | version | env | demo | data

Commands are the `COMMANDS` table; each imports what it needs when it runs, so `version` and `--help` stay fast
(no torch), and sets up its own logging. An argument problem prints the list of problems and exits 2, without a
traceback.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Callable
from typing import NamedTuple

PROG = "llamafactory-cli"


class Command(NamedTuple):
    run: Callable[[list[str]], int | None]
    help: str


def _train(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} train",
        description="Run one training job (pt, sft, rm, ppo, dpo, kto) from a YAML file of arguments.",
        epilog="Overrides: key=value, --key value or --key=value (values are read as YAML: lora_rank=16 is a number). "
        "Keys are LLaMA-Factory's plus transformers' Seq2SeqTrainingArguments; `llamafactory-cli train --keys` "
        "lists ours with their help. Example: llamafactory-cli train examples/sft_lora.yaml learning_rate=1e-4",
    )
    parser.add_argument("config", nargs="?", help="YAML or JSON file of arguments (job.yaml, an example, ...)")
    parser.add_argument("overrides", nargs="*", help="key=value pairs that replace the file's values")
    parser.add_argument("--keys", action="store_true", help="list the argument keys with their help, then exit")
    if not argv or "-h" in argv or "--help" in argv:
        parser.print_help()
        return 0 if argv else 2
    if "--keys" in argv:
        print(describe_keys())
        return 0

    from core.hparams import ArgumentError, check_dict, read_args
    from core.launcher import launch_problems, maybe_launch

    args = read_args(argv)
    # Checked before the training stack is imported (about 10 s), so a typo fails at once.
    problems = check_dict(args) + launch_problems(args)
    if problems:
        raise ArgumentError(problems)
    # Several devices or nodes: torchrun replaces this process and runs this command once per rank.
    status = maybe_launch(argv, args)
    if status is not None:
        return status
    from core.train.tuner import run_exp

    run_exp(args)
    return 0


def describe_keys() -> str:
    """Our argument keys by group, each with its type and help (transformers' keys are listed by name)."""
    from dataclasses import MISSING, fields

    from core.hparams.keys import TRAINING_SPECS
    from core.hparams.parser import GROUPS

    lines = []
    for group, cls in GROUPS.items():
        lines.append(f"{group}:")
        for f in fields(cls):
            if f.init:
                default = "" if f.default is MISSING else f" (default {_yaml_scalar(f.default)})"
                lines.append(f"  {f.name}{default}: {f.metadata.get('help', '')}")
    lines.append("training (transformers Seq2SeqTrainingArguments, see its documentation):")
    lines.append("  " + ", ".join(TRAINING_SPECS))
    return "\n".join(lines)


def _yaml_scalar(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _webui(argv: list[str]) -> int | None:
    from webui.app import main as webui_main

    return webui_main(argv)


def _version(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"{PROG} version", description="Print LlamaBoard's version.")
    parser.parse_args(argv)
    from core.env import package_version

    print(f"LlamaBoard {package_version('llamaboard')}")
    return 0


def _env(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} env", description="Print versions of Python and the training stack, and the visible devices."
    )
    parser.add_argument("--no-devices", action="store_true", help="skip the device lines (they import torch)")
    options = parser.parse_args(argv)
    from core.env import collect_env, format_env

    print(format_env(collect_env(devices=not options.no_devices)))
    return 0


def _demo(argv: list[str]) -> int | None:
    from core.demo import main as demo_main

    return demo_main(argv)


def _data(argv: list[str]) -> int | None:
    from core.data.cli import main as data_main

    return data_main(argv)


COMMANDS: dict[str, Command] = {
    "train": Command(_train, "run a training job: train <config.yaml> [key=value ...]"),
    "webui": Command(_webui, "start the board (LlamaBoard) in the browser"),
    "version": Command(_version, "print the version"),
    "env": Command(_env, "print versions of the stack and the visible devices, for bug reports"),
    "demo": Command(_demo, "build the offline demo model"),
    "data": Command(_data, "inspect datasets: list, preview, statistics"),
}


# LLaMA-Factory's other commands: named, so a user who types one learns it is missing rather than misspelled.
_NOT_YET = ("chat", "export", "eval", "api", "webchat")


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [f"usage: {PROG} <command> [arguments]   ({PROG} <command> --help for more)", "", "commands:"]
    lines += [f"  {name:<{width}}  {command.help}" for name, command in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status (0 ok, 2 bad arguments)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name in _NOT_YET:
        print(
            f"{PROG}: {name!r} is a LLaMA-Factory command that LlamaBoard does not have yet.\n\n{usage()}",
            file=sys.stderr,
        )
        return 2
    if name not in COMMANDS:
        close = difflib.get_close_matches(name, list(COMMANDS), n=1)
        hint = f" Did you mean {close[0]}?" if close else ""
        print(f"{PROG}: unknown command {name!r}.{hint}\n\n{usage()}", file=sys.stderr)
        return 2
    try:
        status = COMMANDS[name].run(rest)
    except ValueError as err:
        # Not imported up front: `version` must not pay for the parser. If an ArgumentError was raised, it is loaded.
        parser = sys.modules.get("core.hparams.parser")
        if parser is None or not isinstance(err, parser.ArgumentError):
            raise
        print(err, file=sys.stderr)
        return 2
    except SystemExit as exit_:  # argparse inside a command: --help is 0, a usage error 2
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
