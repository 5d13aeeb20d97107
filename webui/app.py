"""The board: `llamafactory-webui [--host 127.0.0.1] [--port 7860] [--share] [--lang en]`.

Also `llamafactory-cli webui` and `python -m webui.app`. Serves the Gradio app on 127.0.0.1:7860 unless told
otherwise (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT are honoured), analytics off, no server-side rendering.
The board process never imports the training stack: jobs run as `python -m core.cli train <run>/job.yaml`.

Tests only: LLAMABOARD_FAKE_JOB="<script.py> [options]" makes the runner start
`python <script.py> [options] <run>/job.yaml` instead of the training CLI, so the board can be exercised without
training (tests/webui/fake_job.py is such a script).
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.machinery
import logging
import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.paths import ASSETS_DIR, saves_dir
from webui import config
from webui.manager import Manager, entry, normalize_lang

if TYPE_CHECKING:
    import gradio as gr

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
FAKE_JOB_ENV = "LLAMABOARD_FAKE_JOB"


def create_ui(lang: str | None = None, runner: Any = None) -> gr.Blocks:
    """The whole board, labelled in `lang` (else the remembered language, else English) from the first paint."""
    _prepare_gradio_import()
    import gradio as gr

    from webui.handlers import Board
    from webui.handlers_infer import Infer
    from webui.tabs.chat import bind_chat, create_chat_tab
    from webui.tabs.evaluate import bind_eval, create_eval_tab
    from webui.tabs.export import bind_export, create_export_tab
    from webui.tabs.runs import bind_runs, create_runs_tab
    from webui.tabs.top import bind_top, create_top
    from webui.tabs.train import bind_train, create_train_tab

    saved = config.load_config()
    lang = normalize_lang(lang or saved.get("lang"))
    manager = Manager()
    board = Board(runner if runner is not None else make_runner(), manager)
    infer = Infer(board)

    with gr.Blocks(title="LlamaBoard", analytics_enabled=False) as demo:
        gr.HTML(_header(), elem_id="header")
        manager.add("top", create_top(lang, saved))
        with gr.Tabs() as tabs:
            with gr.Tab(entry(lang, "tabs.train").get("label"), id="train", elem_id="tab_train") as train_tab:
                manager.add("train", create_train_tab(lang, manager.tab("top")))
            with gr.Tab(entry(lang, "tabs.eval").get("label"), id="eval", elem_id="tab_eval") as eval_tab:
                manager.add("eval", create_eval_tab(lang))
            with gr.Tab(entry(lang, "tabs.chat").get("label"), id="chat", elem_id="tab_chat") as chat_tab:
                manager.add("chat", create_chat_tab(lang, manager.tab("top")))
            with gr.Tab(entry(lang, "tabs.export").get("label"), id="export", elem_id="tab_export") as export_tab:
                manager.add("export", create_export_tab(lang))
            with gr.Tab(entry(lang, "tabs.runs").get("label"), id="runs", elem_id="tab_runs") as runs_tab:
                manager.add("runs", create_runs_tab(lang, board))
        tab_list = {"train": train_tab, "eval": eval_tab, "chat": chat_tab, "export": export_tab, "runs": runs_tab}
        manager.add("tabs", tab_list)

        bind_top(board)
        bind_train(board)
        bind_runs(board, tabs)
        bind_eval(infer)
        bind_chat(infer)
        bind_export(infer)
        _bind_page_load(board, demo)

    demo.board = board  # the handlers behind this UI (tests call them directly)
    demo.infer = infer  # those of the Evaluate & Predict, Chat and Export tabs
    return demo


def _bind_page_load(board: Any, demo: gr.Blocks) -> None:
    """A page (re)load shows the running job (else the newest run) and the choices remembered since start."""
    from webui.handlers import LIVE_VIEW, SECTIONS, TOP_BAR, bind

    remembered = [*board.manager.labelled(), "top.model_path", "top.checkpoint_path", "train.reward_model", *SECTIONS]
    page = ["train.poll_state", "train.loss_log_y", *TOP_BAR]
    bind(board, demo.load, board.on_load, page, [*remembered, *LIVE_VIEW])


def make_runner() -> Any:
    """The job runner for this board; picks up jobs still running from a previous board process."""
    from webui.runner import Runner

    fake_job = os.environ.get(FAKE_JOB_ENV)
    kwargs: dict[str, Any] = {"saves_root": saves_dir()}
    if fake_job:
        logger.warning("%s is set: jobs run %s instead of training (tests only)", FAKE_JOB_ENV, fake_job)
        script, *options = shlex.split(fake_job)
        kwargs["job_command"] = [sys.executable, str(Path(script).resolve()), *options]
    runner = Runner(**kwargs)
    try:
        runner.reattach()
    except OSError as err:
        logger.warning("Could not look for running jobs under %s: %s", saves_dir(), err)
    return runner


def launch(
    host: str | None = None,
    port: int | None = None,
    share: bool = False,
    lang: str | None = None,
    prevent_thread_lock: bool = False,
    quiet: bool = False,
) -> gr.Blocks:
    """Build the board and serve it. Returns the Blocks (useful with prevent_thread_lock=True: call .close())."""
    demo = create_ui(lang)
    # launch() sets up the queue itself; an explicit queue() call would build the server app once more (~0.5 s).
    demo.launch(
        server_name=host or os.environ.get("GRADIO_SERVER_NAME") or DEFAULT_HOST,
        server_port=int(port or os.environ.get("GRADIO_SERVER_PORT") or DEFAULT_PORT),
        share=share,
        ssr_mode=False,
        inbrowser=False,
        prevent_thread_lock=prevent_thread_lock,
        quiet=quiet,
        css=_read_asset("style.css"),
        head=FOLLOW_LOG_JS,
        favicon_path=str(ASSETS_DIR / "logo.svg"),
        footer_links=[],
    )
    return demo


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="llamafactory-webui", description="Serve LlamaBoard, the fine-tuning board.")
    parser.add_argument(
        "--host",
        default=os.environ.get("GRADIO_SERVER_NAME") or DEFAULT_HOST,
        help="interface to listen on (default 127.0.0.1, or GRADIO_SERVER_NAME); 0.0.0.0 exposes the board",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("GRADIO_SERVER_PORT") or DEFAULT_PORT),
        help="port (default 7860, or GRADIO_SERVER_PORT)",
    )
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    parser.add_argument("--lang", choices=["en", "zh", "ru", "ko", "ja"], help="language of the labels")
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # gradio's own start-up checks, one line per request
    launch(host=options.host, port=options.port, share=options.share, lang=options.lang)


# The log box follows the end of the log, as a terminal does, unless the user scrolled up to read.
FOLLOW_LOG_JS = """<script>
document.addEventListener("scroll", (event) => {
  const box = event.target;
  if (box && box.matches && box.matches("#output_box textarea")) {
    box.dataset.held = box.scrollTop + box.clientHeight < box.scrollHeight - 24 ? "1" : "0";
  }
}, true);
setInterval(() => {
  const box = document.querySelector("#output_box textarea");
  if (box && box.dataset.held !== "1") box.scrollTop = box.scrollHeight;
}, 1000);
</script>"""


def _header() -> str:
    logo = _read_asset("logo.svg")
    return f'<div class="lb-header">{logo}<span class="lb-title">LlamaBoard</span></div>'


def _read_asset(name: str) -> str:
    try:
        return (ASSETS_DIR / name).read_text(encoding="utf-8")
    except OSError as err:
        logger.warning("Missing asset %s: %s", name, err)
        return ""


class _NoStubWriter(importlib.abc.MetaPathFinder):
    """Loads gradio.component_meta with its .pyi stub writer switched off.

    On every import gradio re-parses each component's source and rewrites `.pyi` stubs next to it in
    site-packages (an aid for gradio's own developers). That is about 40% of gradio's import time here, and a
    server has no business writing into site-packages; without it the board answers its first request within
    the 3 s we promise on a 2-core machine.
    """

    def find_spec(self, name: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name != "gradio.component_meta":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_without_stubs(module: Any) -> None:
            exec_module(module)
            module.create_or_modify_pyi = lambda *args, **kwargs: None

        loader.exec_module = exec_without_stubs  # type: ignore[method-assign]
        return spec


def _prepare_gradio_import() -> None:
    """Environment for gradio, set before its first import: analytics off, no stub writing."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    if "gradio" not in sys.modules and not any(isinstance(f, _NoStubWriter) for f in sys.meta_path):
        sys.meta_path.insert(0, _NoStubWriter())


if __name__ == "__main__":
    main()
