"""The board: `llamafactory-webui [--host 127.0.0.1] [--port 7860] [--share] [--lang en] [--auth user:password]
[--auth-file FILE] [--roots DIR ...] [--allow-insecure-bind]`.

A board on anything but loopback (or with --share) requires a login: `--auth user:password`, `--auth-file` (one
`user:password` a line) or LLAMABOARD_AUTH=user:password; without one it refuses to start, unless the operator
passes --allow-insecure-bind to say they accept that anyone who reaches the port can run jobs. Paths the board
receives must lie under its roots (webui/paths.py; --roots and LLAMABOARD_ROOTS add folders).

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

from core.notify import BOARD_URL_ENV, WEBHOOK_ENV
from core.paths import ASSETS_DIR, saves_dir
from webui import config
from webui.manager import Manager, entry, normalize_lang

if TYPE_CHECKING:
    import gradio as gr

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
FAKE_JOB_ENV = "LLAMABOARD_FAKE_JOB"
AUTH_ENV = "LLAMABOARD_AUTH"
MAX_UPLOAD = "100mb"
"""Largest file gradio accepts in one upload (argument files are a few KiB; datasets go into data/ by other means)."""


class InsecureBind(SystemExit):
    """The board was asked to listen beyond loopback without a login; the message says how to fix it."""


def create_ui(lang: str | None = None, runner: Any = None) -> gr.Blocks:
    """The whole board, labelled in `lang` (else the remembered language, else English) from the first paint."""
    _prepare_gradio_import()
    import gradio as gr

    from webui.board import Board, Infer
    from webui.board_blocks import BoardBlocks
    from webui.tabs.chat import bind_chat, create_chat_tab
    from webui.tabs.data import bind_data, create_data_tab
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

    with BoardBlocks(title="LlamaBoard", analytics_enabled=False) as demo:
        gr.HTML(_header(), elem_id="header")
        manager.add("top", create_top(lang, saved))
        with gr.Tabs() as tabs:
            with gr.Tab(entry(lang, "tabs.train").get("label"), id="train", elem_id="tab_train") as train_tab:
                manager.add("train", create_train_tab(lang, manager.tab("top")))
            with gr.Tab(entry(lang, "tabs.data").get("label"), id="data", elem_id="tab_data") as data_tab:
                manager.add("data", create_data_tab(lang))
            with gr.Tab(entry(lang, "tabs.eval").get("label"), id="eval", elem_id="tab_eval") as eval_tab:
                manager.add("eval", create_eval_tab(lang))
            with gr.Tab(entry(lang, "tabs.chat").get("label"), id="chat", elem_id="tab_chat") as chat_tab:
                manager.add("chat", create_chat_tab(lang, manager.tab("top")))
            with gr.Tab(entry(lang, "tabs.export").get("label"), id="export", elem_id="tab_export") as export_tab:
                manager.add("export", create_export_tab(lang))
            with gr.Tab(entry(lang, "tabs.runs").get("label"), id="runs", elem_id="tab_runs") as runs_tab:
                manager.add("runs", create_runs_tab(lang, board))
        tab_list = {
            "train": train_tab,
            "data": data_tab,
            "eval": eval_tab,
            "chat": chat_tab,
            "export": export_tab,
            "runs": runs_tab,
        }
        manager.add("tabs", tab_list)

        bind_top(board)
        bind_train(board, demo)
        bind_data(board)
        bind_runs(board, tabs, demo)
        bind_eval(infer)
        bind_chat(infer)
        bind_export(infer)
        _bind_page_load(board, demo)

    demo.board = board  # the handlers behind this UI (tests call them directly)
    demo.infer = infer  # those of the Evaluate & Predict, Chat and Export tabs
    return demo


def _bind_page_load(board: Any, demo: gr.Blocks) -> None:
    """A page (re)load shows the running job (else the newest run) and the choices remembered since start."""
    from webui.handlers.choices import SECTIONS
    from webui.handlers.events import bind
    from webui.handlers.live import LIVE_VIEW
    from webui.handlers.top import TOP_BAR

    remembered = [*board.manager.labelled(), "top.model_path", "top.checkpoint_path", "train.reward_model", *SECTIONS]
    page = ["train.poll_state", "train.loss_log_y", *TOP_BAR]
    fresh = [key for key in ("train.output_dir", "eval.output_dir", "export.export_dir") if key in board.manager]
    bind(board, demo.load, board.on_load, page, [*remembered, *LIVE_VIEW, *fresh])


def make_runner() -> Any:
    """The job runner for this board; picks up jobs still running from a previous board process."""
    from webui.runner import Runner

    fake_job = os.environ.get(FAKE_JOB_ENV)
    kwargs: dict[str, Any] = {"saves_root": saves_dir()}
    if fake_job:
        logger.warning("%s is set: jobs run %s instead of training (tests only)", FAKE_JOB_ENV, fake_job)
        script, *options = shlex.split(fake_job)
        kwargs["job_command"] = [sys.executable, str(Path(script).resolve()), *options]
    from webui.paths import board_roots

    runner = Runner(**kwargs, roots=board_roots())
    try:
        runner.reattach()
    except OSError as err:
        logger.warning("Could not look for running jobs under %s: %s", saves_dir(), err)
    return runner


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    if host.strip().lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def parse_auth(text: str, source: str) -> tuple[str, str]:
    """`user:password` -> (user, password); a SystemExit naming `source` when it is not that shape."""
    user, sep, password = text.strip().partition(":")
    if not sep or not user or not password:
        raise SystemExit(f"{source}: expected user:password (both non-empty), for example admin:a-long-password.")
    return user, password


def load_auth(auth: list[str] | None = None, auth_file: str | None = None) -> list[tuple[str, str]]:
    """Logins from --auth values and an --auth-file (one user:password a line, # comments); `launch` adds
    LLAMABOARD_AUTH."""
    logins = [parse_auth(item, "--auth") for item in auth or []]
    if auth_file:
        path = Path(auth_file).expanduser()
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as err:
            raise SystemExit(f"--auth-file {path}: cannot be read ({err}).") from None
        for number, line in enumerate(lines, start=1):
            if line.strip() and not line.lstrip().startswith("#"):
                logins.append(parse_auth(line, f"{path} line {number}"))
        if not logins:
            raise SystemExit(f"--auth-file {path}: no user:password line in it.")
        if path.stat().st_mode & 0o077:
            logger.warning("%s holds passwords and other users can read it: chmod 600 %s", path, path)
    return logins


def check_bind(host: str, share: bool, logins: list[tuple[str, str]], allow_insecure_bind: bool) -> None:
    """Refuse (InsecureBind) to serve beyond loopback without a login unless the operator accepted the risk;
    log what the board does either way."""
    exposed = share or not is_loopback(host)
    where = f"{host} (and a public gradio.live link)" if share else host
    if not exposed:
        logger.info("Listening on %s (loopback only)%s.", host, "; login required" if logins else "")
    elif logins:
        logger.info("Listening on %s; login required (%d user(s)).", where, len(logins))
    elif allow_insecure_bind:
        logger.warning(
            "Listening on %s WITHOUT a login (--allow-insecure-bind): anyone who reaches this port can run jobs "
            "and read the files under the board's roots.",
            where,
        )
    else:
        raise InsecureBind(
            f"Refusing to listen on {where} without a login: anyone who reaches the port could run jobs. Set "
            f"{AUTH_ENV}=user:password, or pass --auth user:password or --auth-file FILE; or listen on 127.0.0.1; "
            "or, on a network you trust, pass --allow-insecure-bind."
        )


def launch(
    host: str | None = None,
    port: int | None = None,
    share: bool = False,
    lang: str | None = None,
    prevent_thread_lock: bool = False,
    quiet: bool = False,
    auth: list[tuple[str, str]] | None = None,
    allow_insecure_bind: bool = False,
    roots: list[str] | None = None,
) -> gr.Blocks:
    """Build the board and serve it. Returns the Blocks (useful with prevent_thread_lock=True: call .close()).

    `auth` are the accepted (user, password) logins (LLAMABOARD_AUTH is added); a non-loopback `host` or `share`
    without one raises InsecureBind unless `allow_insecure_bind`. `roots` adds folders the board may use.
    """
    from webui import paths

    host = host or os.environ.get("GRADIO_SERVER_NAME") or DEFAULT_HOST
    logins = list(auth or [])
    if os.environ.get(AUTH_ENV):
        logins.append(parse_auth(os.environ[AUTH_ENV], AUTH_ENV))
    check_bind(host, share, logins, allow_insecure_bind)
    logger.info("Paths the board accepts lie under: %s", paths.configure(roots or []).describe())
    demo = create_ui(lang)
    from webui.page_cache import middleware

    # launch() sets up the queue itself; an explicit queue() call would build the server app once more (~0.5 s).
    demo.launch(
        server_name=host,
        server_port=int(port or os.environ.get("GRADIO_SERVER_PORT") or DEFAULT_PORT),
        share=share,
        auth=logins or None,
        max_file_size=MAX_UPLOAD,
        ssr_mode=False,
        inbrowser=False,
        prevent_thread_lock=True,
        # gradio's banner tells a user to "set share=True in launch()", a call they never write: ours names --share.
        quiet=True,
        css=_read_asset("style.css"),
        head=FOLLOW_LOG_JS + NOTIFY_JS,
        favicon_path=str(ASSETS_DIR / "logo.svg"),
        footer_links=[],
        # GET / and /config answered from memory after the first load (gradio rebuilds ~1.5 MB for each).
        app_kwargs={"middleware": [middleware(demo)]},
    )
    if not quiet:
        print(banner(demo.local_url, getattr(demo, "share_url", None), share), flush=True)
    if not prevent_thread_lock:
        demo.block_thread()
    return demo


def banner(local_url: str, share_url: str | None, share: bool) -> str:
    """What the board prints once it listens: where to open it, and how to share it (the board's own flags)."""
    lines = [f"* LlamaBoard is running on {local_url}"]
    if share_url:
        lines.append(f"* Public link (anyone with a login can use it): {share_url}")
    elif not share:
        lines.append("* To get a public link as well, start it with --share and a login: --auth user:password")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="llamafactory-webui", description="Serve LlamaBoard, the fine-tuning board.")
    parser.add_argument(
        "--host",
        default=os.environ.get("GRADIO_SERVER_NAME") or DEFAULT_HOST,
        help="interface to listen on (default 127.0.0.1, or GRADIO_SERVER_NAME); any other needs a login",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("GRADIO_SERVER_PORT") or DEFAULT_PORT),
        help="port (default 7860, or GRADIO_SERVER_PORT)",
    )
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link (needs a login)")
    parser.add_argument("--lang", choices=["en", "zh", "ru", "ko", "ja"], help="language of the labels")
    parser.add_argument(
        "--auth", action="append", metavar="USER:PASSWORD", help=f"a login (repeatable; or {AUTH_ENV}=user:password)"
    )
    parser.add_argument("--auth-file", metavar="FILE", help="a file of logins, one user:password a line")
    parser.add_argument(
        "--roots",
        nargs="+",
        metavar="DIR",
        help="more folders the board may read and write (defaults: ./data, ./saves, ./configs, the model cache; "
        "also LLAMABOARD_ROOTS, separated by ':')",
    )
    parser.add_argument(
        "--allow-insecure-bind",
        action="store_true",
        help="serve a non-loopback address without a login: anyone who reaches the port can run jobs",
    )
    parser.add_argument(
        "--webhook",
        metavar="URL",
        help=f"POST a JSON message there when a job finishes, fails, stalls or raises an alert (or {WEBHOOK_ENV}; "
        "the variable keeps the address out of the process list)",
    )
    options = parser.parse_args(argv)
    if options.webhook:
        os.environ[WEBHOOK_ENV] = options.webhook
    # Jobs started from here inherit both: the webhook address and the board's address for the message's link.
    os.environ.setdefault(BOARD_URL_ENV, f"http://{options.host}:{options.port}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # gradio's own start-up checks, one line per request
    launch(
        host=options.host,
        port=options.port,
        share=options.share,
        lang=options.lang,
        auth=load_auth(options.auth, options.auth_file),
        allow_insecure_bind=options.allow_insecure_bind,
        roots=options.roots,
    )


# Boxes that follow their last line, as a terminal does, unless the user scrolled up to read: the job logs and
# the Chat tab's status box (its newest message is the last line).
FOLLOWED_BOXES = "#output_box textarea, #eval_output_box textarea, #export_output_box textarea, #chat_info textarea"
FOLLOW_LOG_JS = """<script>
const FOLLOWED = "FOLLOWED_BOXES";
document.addEventListener("scroll", (event) => {
  const box = event.target;
  if (box && box.matches && box.matches(FOLLOWED)) {
    box.dataset.held = box.scrollTop + box.clientHeight < box.scrollHeight - 24 ? "1" : "0";
  }
}, true);
setInterval(() => {
  for (const box of document.querySelectorAll(FOLLOWED)) {
    if (box.dataset.held !== "1") box.scrollTop = box.scrollHeight;
  }
}, 500);
</script>""".replace("FOLLOWED_BOXES", FOLLOWED_BOXES)


# Browser notifications (when the user allowed them: the browser asks at the first click on the page): a new health
# alert or stall in the live view's banner, and the viewed run turning finished or failed. What was on the page when
# it loaded is not announced.
NOTIFY_JS = """<script>
(() => {
  if (!("Notification" in window)) return;
  document.addEventListener("click", () => {
    if (Notification.permission === "default") Notification.requestPermission();
  }, { once: true, capture: true });
  let seen = null, state = null;
  setInterval(() => {
    const alerts = [...document.querySelectorAll("#alert_banner .lb-alert")].map((el) => el.textContent.trim());
    const progress = document.querySelector("#progress .lb-progress");
    const now = progress ? progress.dataset.state : null;
    const fresh = seen === null ? [] : alerts.filter((text) => !seen.includes(text));
    const ended = state === "running" && (now === "finished" || now === "failed");
    seen = alerts;
    state = now;
    if (Notification.permission !== "granted") return;
    for (const text of fresh) new Notification("LlamaBoard", { body: text.slice(0, 300) });
    if (ended) new Notification("LlamaBoard", { body: progress.textContent.trim().slice(0, 300) });
  }, 2000);
})();
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
