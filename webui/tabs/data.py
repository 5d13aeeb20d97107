"""The Data tab (issue 16): Add (upload or path -> detected format and an editable column mapping -> validate ->
register), Inspect (a sample token by token as training sees it, length histogram against cutoff_len, padding and
packing) and Curate (filters, dedup, sample, eval split -> a new registered dataset). Handlers: webui/handlers/data.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gradio as gr

from webui.handlers.data import MAPPING, PROBLEM_COLUMNS, ROLES
from webui.handlers.events import bind, bind_stream
from webui.manager import button_label, choice_pairs, initial

if TYPE_CHECKING:
    from webui.board import Board

STAGES = ("sft", "pt", "rm", "dpo", "kto", "ppo", "grpo")
FILE_TYPES = [".json", ".jsonl", ".csv", ".parquet", ".txt"]
DEDUP = ("none", "exact", "near")


def create_data_tab(lang: str) -> dict[str, gr.components.Component]:
    """Build the Data tab in `lang`."""
    elems: dict[str, Any] = {}

    def add(name: str, component: Any) -> Any:
        elems[name] = component
        return component

    def text(name: str) -> dict[str, Any]:
        return initial(lang, f"data.{name}")

    def button(name: str, **options: Any) -> Any:
        return add(name, gr.Button(elem_id=f"data_{name}", **options, **button_label(lang, f"data.{name}")))

    add("dataset_dir", gr.Textbox(value="data", elem_id="data_dataset_dir", **text("dataset_dir")))
    add("file", gr.State(None))
    with gr.Tabs():
        with add("add_tab", gr.Tab(elem_id="data_add_tab", **text("add_tab"))):
            with gr.Row(equal_height=True):
                add("upload", gr.File(file_types=FILE_TYPES, type="filepath", elem_id="data_upload", **text("upload")))
                with gr.Column():
                    add("source_path", gr.Textbox(elem_id="data_source_path", **text("source_path")))
                    button("detect_btn", variant="primary")
            add("detect_info", gr.HTML(elem_id="data_detect_info"))
            add("sample", gr.Dataframe(interactive=False, wrap=True, elem_id="data_sample", **text("sample")))
            with add("mapping_box", gr.Column(visible=False, elem_id="data_mapping_box")):
                with gr.Row(equal_height=True):
                    add(
                        "formatting",
                        gr.Dropdown(
                            choices=["alpaca", "sharegpt", "openai"],
                            value="alpaca",
                            elem_id="data_formatting",
                            **text("formatting"),
                        ),
                    )
                    add("ranking", gr.Checkbox(value=False, elem_id="data_ranking", **text("ranking")))
                    add("tags", gr.Textbox(value="{}", elem_id="data_tags", **text("tags")))
                with gr.Row(equal_height=True):
                    for role in ROLES:
                        add(
                            f"col_{role}",
                            gr.Dropdown(
                                choices=[""],
                                value="",
                                min_width=140,
                                elem_id=f"data_col_{role}",
                                **text(f"col_{role}"),
                            ),
                        )
                with gr.Row(equal_height=True):
                    button("validate_btn")
                    add(
                        "skip_bad",
                        gr.Checkbox(value=False, visible=False, elem_id="data_skip_bad", **text("skip_bad")),
                    )
                add("validate_info", gr.HTML(elem_id="data_validate_info"))
                add(
                    "problems",
                    gr.Dataframe(
                        headers=PROBLEM_COLUMNS,
                        interactive=False,
                        wrap=True,
                        elem_id="data_problems",
                        **text("problems"),
                    ),
                )
                with gr.Row(equal_height=True):
                    add("name", gr.Textbox(elem_id="data_name", **text("name")))
                    add("replace", gr.Checkbox(value=False, elem_id="data_replace", **text("replace")))
                    button("register_btn", variant="primary")
                add("add_info", gr.HTML(elem_id="data_add_info"))
        with add("inspect_tab", gr.Tab(elem_id="data_inspect_tab", **text("inspect_tab"))):
            with gr.Row(equal_height=True):
                add(
                    "inspect_dataset",
                    gr.Dropdown(choices=[], elem_id="data_inspect_dataset", **text("inspect_dataset")),
                )
                add(
                    "inspect_stage",
                    gr.Dropdown(
                        choices=list(STAGES), value="sft", elem_id="data_inspect_stage", **text("inspect_stage")
                    ),
                )
                add(
                    "inspect_index",
                    gr.Number(value=0, minimum=0, precision=0, elem_id="data_inspect_index", **text("inspect_index")),
                )
                add(
                    "cutoff_len",
                    gr.Number(value=1024, minimum=1, precision=0, elem_id="data_cutoff_len", **text("cutoff_len")),
                )
                button("inspect_btn", variant="primary")
            add("token_view", gr.HTML(elem_id="data_token_view"))
            add("length_plot", gr.Plot(elem_id="data_length_plot", **text("length_plot")))
            add("length_info", gr.HTML(elem_id="data_length_info"))
        with add("curate_tab", gr.Tab(elem_id="data_curate_tab", **text("curate_tab"))):
            with gr.Row(equal_height=True):
                add("curate_dataset", gr.Dropdown(choices=[], elem_id="data_curate_dataset", **text("curate_dataset")))
                add(
                    "min_chars",
                    gr.Number(value=None, minimum=0, precision=0, elem_id="data_min_chars", **text("min_chars")),
                )
                add(
                    "max_chars",
                    gr.Number(value=None, minimum=0, precision=0, elem_id="data_max_chars", **text("max_chars")),
                )
                add("match", gr.Textbox(elem_id="data_match", **text("match")))
                add("exclude", gr.Textbox(elem_id="data_exclude", **text("exclude")))
            with gr.Row(equal_height=True):
                add(
                    "dedup",
                    gr.Dropdown(
                        choices=choice_pairs(lang, "data.dedup", DEDUP),
                        value="none",
                        elem_id="data_dedup",
                        **text("dedup"),
                    ),
                )
                add(
                    "sample_n",
                    gr.Number(value=None, minimum=0, precision=0, elem_id="data_sample_n", **text("sample_n")),
                )
                add("eval_size", gr.Number(value=None, minimum=0, elem_id="data_eval_size", **text("eval_size")))
                add("new_name", gr.Textbox(elem_id="data_new_name", **text("new_name")))
                add(
                    "curate_replace", gr.Checkbox(value=False, elem_id="data_curate_replace", **text("curate_replace"))
                )
                button("curate_btn", variant="primary")
            add("curate_info", gr.HTML(elem_id="data_curate_info"))
    return elems


def bind_data(board: Board) -> None:
    """Events of the Data tab."""
    m = board.manager
    source = ["data.upload", "data.source_path", "data.name"]
    detect_out = [
        "data.file",
        "data.formatting",
        "data.ranking",
        "data.tags",
        "data.detect_info",
        "data.sample",
        "data.mapping_box",
        "data.problems",
        "data.validate_info",
        "data.skip_bad",
        "data.name",
        *MAPPING,
    ]
    bind(board, m["data.detect_btn"].click, board.data_detect, source, detect_out)
    bind(board, m["data.upload"].upload, board.data_detect, source, detect_out, api_name="data_upload")
    bind(
        board,
        m["data.formatting"].input,
        board.data_formatting,
        ["data.formatting", "data.file"],
        [*MAPPING, "data.tags"],
    )
    entry = ["data.file", "data.formatting", "data.ranking", "data.tags", *MAPPING]
    validate_out = ["data.validate_info", "data.problems", "data.skip_bad"]
    bind_stream(
        board, m["data.validate_btn"].click, board.data_validate, [*entry, "data.name"], validate_out, queue=True
    )
    lists = ["train.dataset_dir", "train.dataset", "train.preview_box", "data.inspect_dataset", "data.curate_dataset"]
    register_in = [
        *entry,
        "data.name",
        "data.dataset_dir",
        "data.replace",
        "data.skip_bad",
        "train.stage",
    ]
    bind(
        board,
        m["data.register_btn"].click,
        board.data_register,
        register_in,
        [*lists, "data.add_info", "data.replace", "data.validate_info", "data.problems", "data.skip_bad"],
    )
    refresh = ["data.dataset_dir", "data.inspect_dataset", "data.curate_dataset"]
    bind(
        board, m["data.dataset_dir"].blur, board.data_refresh, refresh, ["data.inspect_dataset", "data.curate_dataset"]
    )
    for tab in ("data.inspect_tab", "data.curate_tab"):
        bind(
            board,
            m[tab].select,
            board.data_refresh,
            refresh,
            ["data.inspect_dataset", "data.curate_dataset"],
            api_name=f"{tab.split('.')[1]}_opened",
        )
    inspect_in = [
        "data.dataset_dir",
        "data.inspect_dataset",
        "data.inspect_stage",
        "data.inspect_index",
        "data.cutoff_len",
        "top.model_name",
        "top.model_path",
        "top.template",
        "train.per_device_train_batch_size",
    ]
    inspect_out = ["data.token_view", "data.length_plot", "data.length_info"]
    bind(board, m["data.inspect_btn"].click, board.data_inspect, inspect_in, inspect_out)
    curate_in = [
        "data.dataset_dir",
        "data.curate_dataset",
        "data.min_chars",
        "data.max_chars",
        "data.match",
        "data.exclude",
        "data.dedup",
        "data.sample_n",
        "data.eval_size",
        "data.new_name",
        "data.curate_replace",
        "train.stage",
    ]
    bind(
        board,
        m["data.curate_btn"].click,
        board.data_curate,
        curate_in,
        [*lists, "data.curate_info", "data.curate_replace"],
    )
