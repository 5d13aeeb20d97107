"""The command line: `llamafactory-cli <command> ...`, the same as `python -m core.cli <command> ...`.

    llamafactory-cli train examples/sft_lora.yaml learning_rate=1e-4 lora_rank=16
    llamafactory-cli eval examples/infer/eval_lora.yaml
    llamafactory-cli chat examples/infer/chat_lora.yaml
    llamafactory-cli export examples/infer/export_lora.yaml export_dir=merged
    llamafactory-cli runs list --json
    llamafactory-cli webui | version | env | demo | data

Commands are the `COMMANDS` table; each imports what it needs when it runs, so `version` and `--help` stay fast
(no torch), and sets up its own logging. An argument problem prints the list of problems and exits 2, without a
traceback.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from collections.abc import Callable
from typing import NamedTuple, TextIO

from core.errors import UserError
from core.secrets import redact

PROG = "llamafactory-cli"


class Command(NamedTuple):
    run: Callable[[list[str]], int | None]
    help: str


def _config_parser(name: str, description: str, epilog: str, config_help: str = "YAML or JSON file of arguments"):
    """The parser of a command that runs a YAML file of arguments with key=value overrides."""
    parser = argparse.ArgumentParser(prog=f"{PROG} {name}", description=description, epilog=epilog)
    parser.add_argument("config", nargs="?", help=config_help)
    parser.add_argument("overrides", nargs="*", help="key=value pairs that replace the file's values")
    return parser


def _help_status(parser: argparse.ArgumentParser, argv: list[str]) -> int | None:
    """Help asked for (0) or no file given (2, after the help); None when the command should run."""
    if not argv or "-h" in argv or "--help" in argv:
        parser.print_help()
        return 0 if argv else 2
    return None


def _train(argv: list[str]) -> int:
    parser = _config_parser(
        "train",
        "Run one training job (pt, sft, rm, ppo, dpo, kto, grpo) from a YAML file of arguments.",
        "Overrides: key=value, --key value or --key=value (values are read as YAML: lora_rank=16 is a number). "
        "Keys are LLaMA-Factory's plus transformers' Seq2SeqTrainingArguments; `llamafactory-cli train --keys` "
        "lists ours with their help. Example: llamafactory-cli train examples/sft_lora.yaml learning_rate=1e-4",
        config_help="YAML or JSON file of arguments (job.yaml, an example, ...)",
    )
    parser.add_argument("--keys", action="store_true", help="list the argument keys with their help, then exit")
    parser.add_argument(
        "--force", action="store_true", help="start even when the plan says it will not fit (= plan_check: false)"
    )
    if (status := _help_status(parser, argv)) is not None:
        return status
    if "--keys" in argv:
        print(describe_keys())
        return 0

    from core.hparams import read_args

    force = "--force" in argv
    argv = [item for item in argv if item != "--force"]
    args = read_args(argv)
    if force:
        args["plan_check"] = False
    return _run_job(argv, args)


def _run_job(argv: list[str], args: dict) -> int:
    """Check, maybe hand over to torchrun (which runs `train <argv>` per rank), then run the job in this process."""
    from core.hparams import ArgumentError, check_dict, path_problems
    from core.launcher import launch_problems, maybe_launch
    from core.preflight import input_problems

    # Checked before the training stack is imported (about 10 s), so a typo fails at once, and before the run
    # folder exists, so a missing dataset or model leaves nothing behind.
    problems = check_dict(args) + path_problems(args) + launch_problems(args)
    problems += input_problems(args) if not problems else []
    if problems:
        raise ArgumentError(problems)
    # Will it fit the devices (core.plan_check; pure, from config.json): refused with the estimate and "Fit it"
    # unless plan_check: false / --force. Checked once, here, not again in each torchrun rank.
    if args.get("do_train"):
        from core.plan_check import refusal

        refused = refusal(args, _plan_lengths)
        if refused:
            print(f"error: {refused}", file=sys.stderr)
            return 1
    # Several devices or nodes: torchrun replaces this process and runs this command once per rank.
    status = maybe_launch(argv, args)
    if status is not None:
        return status
    from core.train.tuner import run_exp

    run_exp(args)
    return 0


# What `eval` adds to the YAML: an sft prediction run, as `train` with do_predict runs it.
EVAL_DEFAULTS = {"stage": "sft", "do_train": False, "do_predict": True, "predict_with_generate": True}


def _eval(argv: list[str]) -> int:
    parser = _config_parser(
        "eval",
        "Evaluate & Predict: generate answers for eval_dataset (or dataset) with the model and its "
        "adapters, and score them. Writes generated_predictions.jsonl (prompt, label, predict per line) and "
        "predict_results.json (BLEU-4, ROUGE-1/2/L, runtime) into output_dir, as `train` with do_predict does.",
        "The file is a training YAML; eval sets stage: sft, do_predict: true, predict_with_generate: true "
        "and do_train: false. Example: llamafactory-cli eval examples/infer/eval_lora.yaml max_samples=20",
    )
    if (status := _help_status(parser, argv)) is not None:
        return status
    from core.hparams import ArgumentError, check_dict, path_problems, read_args

    args = read_args(argv)
    problems = []
    if args.get("stage", "sft") != "sft":
        problems.append(
            f"stage: received {args['stage']!r} — eval generates answers, which is an sft prediction run — "
            "remove stage (or set sft); other stages evaluate with `train` and do_eval: true"
        )
    if args.get("do_train"):
        problems.append(
            "do_train: received true — eval only predicts — train first with `llamafactory-cli train`, then "
            "evaluate its output (adapter_name_or_path) with eval"
        )
    args.update(EVAL_DEFAULTS)
    if problems:  # with the job's own problems (adapter paths, secrets, ...), so one run names them all
        raise ArgumentError(problems + check_dict(args) + path_problems(args))
    # torchrun workers run `train` with this argv: the eval keys travel as overrides.
    forced = [
        f"{key}={'true' if value is True else 'false' if value is False else value}"
        for key, value in EVAL_DEFAULTS.items()
    ]
    return _run_job([*argv, *forced], args)


def _chat(argv: list[str]) -> int:
    parser = _config_parser(
        "chat",
        "Chat with a model (and its adapters) in the terminal; answers stream as they are generated. "
        "Type `clear` to start a new conversation, `exit` (or end the input) to quit.",
        "Keys: model_name_or_path, adapter_name_or_path, template, infer_dtype, default_system, and the "
        "generation keys (temperature, top_p, max_new_tokens, ...). Example: llamafactory-cli chat "
        "examples/infer/chat_lora.yaml temperature=0.3",
    )
    if (status := _help_status(parser, argv)) is not None:
        return status
    return chat_loop(_infer_args(argv))  # a wrong model or adapter path is a UserError: main() prints it


def _infer_args(argv: list[str]) -> dict:
    """The arguments of chat / export, checked before the training stack is imported (a typo fails at once)."""
    from core.hparams import ArgumentError, check_infer_dict, path_problems, read_args

    args = read_args(argv)
    problems = check_infer_dict(args) + path_problems(args)
    if problems:
        raise ArgumentError(problems)
    return args


def chat_loop(args: dict, stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    """The terminal chat: prompts on stdout, logs on stderr, so `... | llamafactory-cli chat x.yaml` is testable."""
    from core.chat import ChatModel, parse_tool_calls

    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    _setup_logging(sys.stderr)
    model = ChatModel(args)
    system = args.get("default_system")
    print("Chat ready. Type `clear` to start over, `exit` to quit.", file=stdout, flush=True)
    messages: list[dict] = []
    while True:
        print("User: ", end="", file=stdout, flush=True)
        line = stdin.readline()
        if not line:  # end of input
            print(file=stdout)
            return 0
        query = line.strip()
        if query == "exit":
            return 0
        if query == "clear":
            messages = []
            print("History cleared.", file=stdout, flush=True)
            continue
        if not query:
            continue
        messages.append({"role": "user", "content": query})
        print("Assistant: ", end="", file=stdout, flush=True)
        pieces = []
        for piece in model.stream_chat(messages, system=system):
            pieces.append(piece)
            print(piece, end="", file=stdout, flush=True)
        print(file=stdout, flush=True)
        answer = "".join(pieces)
        for call in parse_tool_calls(answer):
            print(f"Tool call: {call['name']}({json.dumps(call['arguments'], ensure_ascii=False)})", file=stdout)
        messages.append({"role": "assistant", "content": answer})


def _setup_logging(stream: TextIO) -> None:
    """Our log lines to `stream`; the libraries' chatter and progress bars off (chat and export)."""
    import logging
    import warnings

    import transformers

    # transformers' deprecation notices about its own internals mean nothing to a user of chat or export.
    warnings.filterwarnings("ignore", category=FutureWarning)
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    core_logger = logging.getLogger("core")
    if not core_logger.handlers:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
        core_logger.addHandler(handler)
        core_logger.setLevel(logging.INFO)
        core_logger.propagate = False


def _export(argv: list[str]) -> int:
    parser = _config_parser(
        "export",
        "Merge the LoRA adapters (adapter_name_or_path) into the model and save it with its tokenizer "
        "as safetensors shards in export_dir; optionally push it to the hub (export_hub_model_id, token from "
        "HF_TOKEN).",
        "Keys: model_name_or_path, adapter_name_or_path, template, infer_dtype, export_dir, export_size (GB "
        "per shard), export_device, export_overwrite, export_hub_model_id. Example: llamafactory-cli export "
        "examples/infer/export_lora.yaml export_dir=merged",
    )
    if (status := _help_status(parser, argv)) is not None:
        return status
    args = _infer_args(argv)
    from core.export import export_model

    _setup_logging(sys.stdout)
    export_model(args)  # ExportError and a wrong model path are UserErrors: main() prints them
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
    from core.env import collect_env, format_env, refused_keys

    print(format_env(collect_env(devices=not options.no_devices)))
    print("\nLLaMA-Factory keys still refused here (leave them off, or remove them):")
    print("\n".join(f"  {line}" for line in refused_keys()))
    return 0


def _plan(argv: list[str]) -> int:
    parser = _config_parser(
        "plan",
        "Will this job fit, and how long will it take? Memory per device by part (weights, gradients, optimizer, "
        "activations, logits, reference / reward model, KV cache) and time per step, from config.json alone.",
        "Example: llamafactory-cli plan examples/sft_lora.yaml --gpu A100-80GB cutoff_len=4096. Without --gpu the "
        "plan is for this machine's available memory and its CPU (time after `plan --calibrate`). "
        f"GPUs: {', '.join(_plan_gpus())}.",
    )
    parser.add_argument("--gpu", help="a GPU from the table (its memory and throughput)")
    parser.add_argument("--memory-gb", type=float, help="device memory in GiB (overrides the GPU's)")
    parser.add_argument("--devices", type=int, default=1, help="number of devices (DeepSpeed ZeRO divides by it)")
    parser.add_argument("--no-data", action="store_true", help="skip measuring the dataset (assume cutoff_len)")
    parser.add_argument(
        "--calibrate",
        action="store_true",
        help="measure this machine's CPU (three short training jobs, about a minute) and remember it for CPU plans",
    )
    if argv == ["--calibrate"]:
        from core.plan_calibrate import CalibrationError, calibration_path, describe, run_calibration

        try:
            figure = run_calibration()
        except CalibrationError as err:
            print(f"calibration failed: {err}", file=sys.stderr)
            return 1
        print(f"{describe(figure)} (load average {figure['load_average']}) — saved in {calibration_path()}")
        return 0
    if (status := _help_status(parser, argv)) is not None:
        return status
    options, rest = _plan_options(argv)
    from core.hparams import ArgumentError, read_args
    from core.plan import DEVICES, GB, PlanError, device_time_model, estimate, fit, format_table, read_config

    if options["gpu"] is not None and options["gpu"] not in DEVICES:
        raise ArgumentError([f"--gpu: received {options['gpu']!r} — unknown GPU — use one of: {', '.join(DEVICES)}"])
    args = read_args(rest)
    try:
        config = read_config(str(args.get("model_name_or_path") or ""))
    except PlanError as err:
        raise ArgumentError([f"model_name_or_path: received {args.get('model_name_or_path')!r} — {err}"]) from err
    gpu = options["gpu"]
    kwargs = {"world_size": options["devices"], "device": "cuda" if gpu else "cpu"}
    if gpu:
        kwargs.update(device_time_model(gpu))
    else:
        from core.plan_check import cpu_time_model

        kwargs.update(cpu_time_model())
    memory_gb = options["memory_gb"] or (DEVICES[gpu]["memory_gb"] if gpu else _host_memory_gb())
    device_bytes = int(memory_gb * GB)
    lengths = None if options["no_data"] else _plan_lengths(args)
    if lengths is not None:
        kwargs["lengths"] = lengths
    result = estimate(args, config, **kwargs)
    print(format_table(result, device_bytes))
    if lengths is None:
        print("(lengths assumed: cutoff_len per sample, the upper bound; shorter samples need less)")
    else:
        print(
            f"(lengths measured on {lengths.rows:,} rows: longest {lengths.longest}, "
            f"{lengths.mean_padded:.0f} tokens per padded sequence on average)"
        )
    if result.seconds_per_step is None and not gpu:
        print("(time: run `llamafactory-cli plan --calibrate` once to measure this machine's CPU)")
    if result.verdict(device_bytes) == "too_big":
        _, changes = fit(args, config, device_bytes, **kwargs)
        print("Fit it:" if changes else "")
        print("\n".join(f"  {line}" for line in changes))
        return 1
    return 0


def _plan_gpus() -> list[str]:
    from core.plan import DEVICES

    return list(DEVICES)


def _plan_options(argv: list[str]) -> tuple[dict, list[str]]:
    """--gpu / --memory-gb / --devices taken out of argv; the rest is the config file and its overrides."""
    options: dict = {"gpu": None, "memory_gb": None, "devices": 1, "no_data": False}
    rest: list[str] = []
    items = iter(argv)
    for item in items:
        name, _, value = item.partition("=")
        key = {"--gpu": "gpu", "--memory-gb": "memory_gb", "--devices": "devices"}.get(name)
        if name == "--no-data":
            options["no_data"] = True
            continue
        if key is None:
            rest.append(item)
            continue
        value = value or next(items, "")
        options[key] = {"gpu": str, "memory_gb": float, "devices": int}[key](value)
    return options, rest


def _plan_lengths(args: dict):
    """The dataset's measured lengths (tokenizer only, no model), or None when there is no dataset to read."""
    if not args.get("dataset"):
        return None
    from transformers import AutoTokenizer

    from core.data.stats import dataset_stats
    from core.data.template import get_template_and_fix_tokenizer
    from core.demo import resolve_model_path
    from core.hparams import DataArguments
    from core.plan import data_lengths

    data_args = DataArguments(
        template=args.get("template"),
        dataset=args["dataset"],
        dataset_dir=args.get("dataset_dir") or "data",
        cutoff_len=int(args.get("cutoff_len", 2048)),
        max_samples=int(args.get("max_samples") or 0) or None,
    )
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(str(args["model_name_or_path"])))
    template = get_template_and_fix_tokenizer(tokenizer, data_args)
    stage = str(args.get("stage", "sft"))
    batch = int(args.get("per_device_train_batch_size", 1))
    return data_lengths(dataset_stats(tokenizer, template, data_args, stage=stage, batch_size=batch))


def _host_memory_gb() -> float:
    from core.plan_check import host_memory

    return host_memory() / 1024**3


def _demo(argv: list[str]) -> int | None:
    from core.demo import main as demo_main

    return demo_main(argv)


def _expand(argv: list[str]) -> int | None:
    from core.llama_pro import main as expand_main

    return expand_main(argv)


def _data(argv: list[str]) -> int | None:
    if argv[:1] == ["tokens"]:  # what training sees of a sample (core.data.tokenview; loads the tokenizer)
        from core.data.tokenview import main as tokens_main

        return tokens_main(argv[1:])
    from core.data.cli import main as data_main

    return data_main(argv)


def _sweep(argv: list[str]) -> int | None:
    from core.sweep import main as sweep_main

    return sweep_main(argv, run_job=_run_job)


def _runs(argv: list[str]) -> int | None:
    from core.runs_cli import main as runs_main

    return runs_main(argv, run_job=_run_job)


COMMANDS: dict[str, Command] = {
    "train": Command(_train, "run a training job: train <config.yaml> [key=value ...]"),
    "webui": Command(_webui, "start the board (LlamaBoard) in the browser"),
    "version": Command(_version, "print the version"),
    "env": Command(_env, "print versions of the stack and the visible devices, for bug reports"),
    "demo": Command(_demo, "build the offline demo model"),
    "data": Command(_data, "datasets: list, preview, statistics, tokens (what training sees); add, validate, curate"),
    "sweep": Command(_sweep, "a grid of runs: sweep job.yaml learning_rate=1e-4,5e-4 lora_rank=8,16"),
    "runs": Command(_runs, "the runs under saves: runs list [--json] | diff A B | rerun A (the board's Runs tab)"),
    "eval": Command(_eval, "generate and score answers (BLEU, ROUGE): eval <config.yaml> [key=value ...]"),
    "chat": Command(_chat, "chat with a model (and adapters) in the terminal: chat <config.yaml> [key=value ...]"),
    "export": Command(_export, "merge LoRA adapters into the model and save it: export <config.yaml> [key=value ...]"),
    "plan": Command(_plan, "will this job fit, and how long will it take: plan <config.yaml> [--gpu NAME]"),
    "expand": Command(_expand, "LLaMA Pro: add identity blocks to a model: expand <model> <dir> --num-expand N"),
}


# LLaMA-Factory's other commands: named, so a user who types one learns it is missing rather than misspelled.
_NOT_YET = ("api", "webchat")


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
    except UserError as err:  # a bad key, path or dataset row: the message alone, no traceback
        # A problem list has its own heading; a single message is marked so the board's log reader finds it.
        print(redact(str(err) if getattr(err, "problems", None) else f"error: {err}"), file=sys.stderr)
        return 2
    except SystemExit as exit_:  # argparse inside a command: --help is 0, a usage error 2
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
