"""What a page load costs the board (issue 19 item 8), kept cheap without changing what the page gets:

- GET / and /config come from `webui.page_cache.PageCache`: the same bytes gradio builds, never across logins,
  never to a request that is not logged in, rebuilt when the config or the page's root URL changes.
- Outputs an event leaves alone skip gradio's component rebuild (`webui.board_blocks.BoardBlocks`): every event
  answers exactly what gradio's own Blocks answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import gzip
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr
import httpx
import pytest
from gradio.state_holder import SessionState

from webui.board_blocks import BoardBlocks
from webui.page_cache import middleware


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(demo: Any, dep_fn: Any, predictions: Any) -> tuple[list[Any], list[Any]]:
    """What gradio's Blocks and the board's answer for the same predictions, in the same kind of fresh session."""

    def fresh() -> Any:  # a copy of the values (postprocessing may change them), the same component keys
        if isinstance(predictions, dict) and predictions and all(isinstance(k, gr.blocks.Block) for k in predictions):
            return {key: copy.deepcopy(value) for key, value in predictions.items()}
        return copy.deepcopy(predictions)

    async def both() -> tuple[list[Any], list[Any]]:
        plain = await gr.Blocks.postprocess_data(demo, dep_fn, fresh(), SessionState(demo))
        fast = await demo.postprocess_data(dep_fn, fresh(), SessionState(demo))
        return plain, fast

    return asyncio.run(both())


def test_every_output_an_event_leaves_alone_is_answered_as_gradio_answers_it() -> None:
    """Skips, empty updates, updates of None only, values, prop updates, an HTML output, a State, one output."""
    with BoardBlocks() as demo:
        text = gr.Textbox(label="t")
        html = gr.HTML("<b>x</b>")
        drop = gr.Dropdown(choices=["a", "b"], value="a", label="d")
        number = gr.Number(value=1)
        state = gr.State({"k": 1})
        hidden = gr.Textbox(visible=False)
        outputs = [text, html, drop, number, state, hidden]
        button = gr.Button()
        button.click(lambda: None, None, outputs)
        button.click(lambda: None, None, [text])
    many, one = demo.fns[0], demo.fns[1]
    cases = [
        {text: "hello"},
        {drop: gr.update(choices=["a", "b", "c"], value="c"), html: gr.skip()},
        {hidden: gr.update(visible=None), number: gr.update()},
        {state: {"k": 2}, html: "<i>new</i>", number: 3},
        {html: gr.update(visible=False), text: gr.update(value="v", label="L")},
        {text: gr.skip(), html: gr.skip(), drop: gr.skip(), number: gr.skip(), state: gr.skip(), hidden: gr.skip()},
    ]
    for predictions in cases:
        plain, fast = _answers(demo, many, predictions)
        assert fast == plain, predictions
    for prediction in ("only", gr.skip(), gr.update(label="x"), {text: "by key"}):
        assert _answers(demo, one, prediction)[1] == _answers(demo, one, prediction)[0]

    async def later_update_after_a_skip() -> tuple[Any, Any]:
        answers = []
        for blocks_postprocess in (gr.Blocks.postprocess_data, BoardBlocks.postprocess_data):
            session = SessionState(demo)
            await blocks_postprocess(demo, many, {text: "x"}, session)  # drop skipped (rebuilt by gradio only)
            answers.append(await blocks_postprocess(demo, many, {drop: gr.update(label="later")}, session))
        return tuple(answers)

    plain, fast = asyncio.run(later_update_after_a_skip())
    assert fast == plain


def test_the_page_load_event_answers_as_gradio_would_in_every_language(board_home: Path, ui: Any) -> None:
    """The board's on-load answer (172 outputs, most left alone) through both Blocks; after the user switched
    the language, the load still relabels the page (the cached page is built once, in the start language)."""
    from webui import config

    load = next(fn for fn in ui.fns.values() if fn.api_name == "on_load")
    values = {block: getattr(block, "value", None) for block in load.inputs}
    for lang in ("en", "zh", "ja"):
        config.save_config({"lang": lang})
        predictions = load.fn(values)
        plain, fast = _answers(ui, load, predictions)
        assert fast == plain
        lang_box = ui.board.manager["top.lang"]
        answered = fast[load.outputs.index(lang_box)]
        shown = answered.get("value") if isinstance(answered, dict) else answered
        assert (shown or "en") == lang, (lang, answered)
        if lang == "en":  # the page's own language: most outputs are left alone (gradio rebuilt each of them)
            assert sum(1 for answer in plain if answer == {"__type__": "update"}) > len(load.outputs) // 2
    config.save_config({"lang": "en"})


@pytest.fixture(scope="module")
def served(board_home: Path) -> Any:
    """The board served with two logins, as `llamafactory-webui --auth` serves it."""
    from webui import app

    port = _free_port()
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("LLAMABOARD_AUTH", raising=False)
        demo = app.launch(
            port=port, prevent_thread_lock=True, quiet=True, auth=[("alice", "pw-alice"), ("bob", "pw-bob")]
        )
    demo.test_url = f"http://127.0.0.1:{port}/"
    yield demo
    demo.close()


def _page_config(html: str) -> dict[str, Any]:
    """The config gradio writes into the page (window.gradio_config)."""
    start = html.index("window.gradio_config = ") + len("window.gradio_config = ")
    return json.loads(html[start : html.index(";</script>", start)])


@contextlib.contextmanager
def _login(url: str, user: str, password: str) -> Iterator[httpx.Client]:
    """A browser-like client logged in through the board's login form."""
    with httpx.Client(base_url=url, timeout=60) as client:
        assert client.post("login", data={"username": user, "password": password}).status_code == 200
        yield client


def test_without_a_login_nothing_comes_from_or_goes_into_the_cache(served: Any) -> None:
    url, cache = served.test_url, served.page_cache
    with _login(url, "alice", "pw-alice") as alice:
        assert alice.get("config").json()["username"] == "alice"
    assert cache.entries  # alice's config is cached now
    stored = dict(cache.entries)
    for cookies in ({}, {f"access-token-{served.server_app.cookie_id}": "forged"}):
        with httpx.Client(base_url=url, timeout=60, cookies=cookies) as stranger:
            page = stranger.get("")
            assert page.status_code == 200
            shown = _page_config(page.text)
            assert shown.get("auth_required") is True and not shown["components"] and "username" not in shown
            assert stranger.get("config").status_code == 401
    assert dict(cache.entries) == stored  # nothing added for the strangers


def test_each_login_gets_its_own_page_and_a_logout_ends_it(served: Any) -> None:
    url, cache = served.test_url, served.page_cache
    with _login(url, "alice", "pw-alice") as alice, _login(url, "bob", "pw-bob") as bob:
        hits = cache.hits
        pages = {
            name: [client.get(path).text for path in ("", "config", "", "config")]
            for name, client in (("alice", alice), ("bob", bob))
        }
        assert cache.hits >= hits + 4
        for name, (page, conf, page_again, conf_again) in pages.items():
            assert page == page_again and conf == conf_again
            assert json.loads(conf)["username"] == name and _page_config(page)["username"] == name
        cookie = dict(alice.cookies)
        alice.get("logout", follow_redirects=False)
        with httpx.Client(base_url=url, timeout=60, cookies=cookie) as after:
            assert _page_config(after.get("").text).get("auth_required") is True
            assert after.get("config").status_code == 401
        assert bob.get("config").text == pages["bob"][1]  # bob is still logged in


def test_the_cached_page_is_the_page_gradio_builds_and_follows_what_it_depends_on(served: Any) -> None:
    url, cache = served.test_url, served.page_cache
    with _login(url, "alice", "pw-alice") as alice:
        cache.clear()
        first = {path: alice.get(path) for path in ("", "config")}  # built by gradio, stored
        again = {path: alice.get(path) for path in ("", "config")}  # from the cache
        zipped = alice.get("", headers={"Accept-Encoding": "gzip"})
        key = cache._key
        cache._key = lambda scope: None  # gradio alone
        try:
            uncached = {path: alice.get(path) for path in ("", "config")}
        finally:
            cache._key = key
        for path in ("", "config"):
            assert first[path].content == again[path].content == uncached[path].content
            assert again[path].headers["content-type"] == uncached[path].headers["content-type"]
        assert zipped.headers["content-encoding"] == "gzip" and zipped.content == first[""].content  # httpx unzips
        assert len(gzip.compress(first[""].content)) < len(first[""].content) // 5

        # The root URL written into the page follows the request's host and the proxy's headers.
        port = url.rsplit(":", 1)[1].strip("/")
        assert alice.get("config", headers={"Host": f"localhost:{port}"}).json()["root"] == f"http://localhost:{port}"
        assert alice.get("config", headers={"X-Forwarded-Proto": "https"}).json()["root"].startswith("https://")
        assert _page_config(alice.get("", headers={"X-Forwarded-Proto": "https"}).text)["root"].startswith("https")
        assert alice.get("config").json()["root"] == f"http://127.0.0.1:{port}"

        # A new config (gradio rebuilds it, e.g. on reload) is what the next load gets.
        original = served.config
        served.config = {**original, "title": "Rebuilt board"}
        try:
            assert alice.get("config").json()["title"] == "Rebuilt board"
            assert _page_config(alice.get("").text)["title"] == "Rebuilt board"
        finally:
            served.config = original
        assert alice.get("config").content == first["config"].content


def test_concurrent_first_loads_build_the_page_once() -> None:
    """200 loads arriving together on a cold cache wait for one build instead of each building the page."""
    with gr.Blocks() as demo:
        gr.Textbox("hello", label="greeting")
    port = _free_port()
    demo.launch(server_port=port, prevent_thread_lock=True, quiet=True, app_kwargs={"middleware": [middleware(demo)]})
    try:
        url, bodies = f"http://127.0.0.1:{port}/config", []
        barrier = threading.Barrier(30)

        def load() -> None:
            barrier.wait()
            bodies.append(httpx.get(url, timeout=60).content)

        threads = [threading.Thread(target=load) for _ in range(30)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(bodies) == 30 and len(set(bodies)) == 1 and b'"greeting"' in bodies[0]
        assert demo.page_cache.misses == 1 and demo.page_cache.hits == 29
    finally:
        demo.close()
