"""The Data tab's Inspect view drawn from `llamafactory-cli data tokens --json` (core.data.tokenview): the sample as
coloured tokens (loss highlighted, masked prompt greyed, special tokens boxed, truncated-away tokens struck through
behind a scissors mark), the length histogram against cutoff_len (plotly), and the truncation / padding / packing
summary. Pure functions of the JSON and the language; no gradio."""

from __future__ import annotations

from html import escape
from typing import Any

from webui.manager import alert

SIDES = {
    "sample": "data_side_sample",
    "chosen": "data_side_chosen",
    "rejected": "data_side_rejected",
    "prompt": "data_side_prompt",
}
LEGEND = {
    "loss": "data_legend_loss",
    "masked": "data_legend_masked",
    "special": "data_legend_special",
    "cut": "data_legend_cut",
}
LENGTHS = {"prompt": "data_len_prompt", "response": "data_len_response", "total": "data_len_total"}


def _token(token: dict[str, Any]) -> str:
    text = str(token.get("text", ""))
    shown = escape(text).replace("\n", "↵").replace(" ", "·") if token.get("special") or not text.strip() else None
    if shown is None:
        shown = escape(text)
    classes = [f"lb-tok lb-tok-{token.get('flag', 'masked')}"]
    if token.get("special"):
        classes.append("lb-tok-special")
    title = f"id {token.get('id')} · {token.get('flag')}" + (" · special" if token.get("special") else "")
    html = f'<span class="{" ".join(classes)}" title="{escape(title)}">{shown}</span>'
    return html + ("<br>" if "\n" in text and not token.get("special") else "")


def side_html(lang: str | None, name: str, side: dict[str, Any], cutoff: int) -> str:
    """One sequence: a heading with its counts, then its tokens with a scissors mark where truncation cuts."""
    parts, cutting = [], False
    mark = f'<span class="lb-tok-cutmark" title="cutoff_len {cutoff}">✂</span>'
    for token in side.get("tokens") or []:
        cut = token.get("flag") == "cut"
        if cut != cutting:
            parts.append(mark)
            cutting = cut
        parts.append(_token(token))
    head = alert(
        lang,
        "data_side_head",
        side=alert(lang, SIDES[name]) if name in SIDES else name,
        kept=side.get("length", 0),
        total=side.get("full_length", 0),
        loss=side.get("loss_tokens", 0),
    )
    body = "".join(parts)
    return (
        f'<div class="lb-tokside"><div class="lb-tokhead">{escape(head)}</div><div class="lb-toks">{body}</div></div>'
    )


def token_view_html(lang: str | None, view: dict[str, Any]) -> str:
    """The whole view: legend, kto tag, and the sides (chosen and rejected side by side)."""
    legend = "".join(
        f'<span class="lb-tok lb-tok-{flag}{" lb-tok-special" if flag == "special" else ""}">'
        f"{escape(alert(lang, key))}</span> "
        for flag, key in LEGEND.items()
    )
    head = alert(
        lang,
        "data_view_head",
        dataset=view.get("dataset", ""),
        index=view.get("index", 0),
        stage=view.get("stage", ""),
        cutoff=view.get("cutoff_len", 0),
    )
    parts = [f'<div class="lb-tokview" id="token_view_body"><div class="lb-tokhead">{escape(head)}</div>']
    parts.append(f'<div class="lb-toklegend">{legend}</div>')
    if "kto_tag" in view:
        tag = alert(lang, "data_kto_good" if view["kto_tag"] else "data_kto_bad")
        parts.append(f'<div class="lb-tokhead lb-kto-{str(bool(view["kto_tag"])).lower()}">{escape(tag)}</div>')
    parts.append('<div class="lb-toksides">')
    for name, side in (view.get("sides") or {}).items():
        parts.append(side_html(lang, name, side, int(view.get("cutoff_len") or 0)))
    parts.append("</div></div>")
    return "".join(parts)


def length_figure(lang: str | None, stats: dict[str, Any]) -> Any:
    """Overlaid histograms of prompt, answer and total tokens with a line at cutoff_len."""
    import plotly.graph_objects as go

    figure = go.Figure()
    lengths = stats.get("lengths") or {}
    for key, name in LENGTHS.items():
        figure.add_trace(go.Histogram(x=lengths.get(key) or [], name=alert(lang, name), opacity=0.6))
    cutoff = stats.get("cutoff_len")
    if cutoff:
        figure.add_vline(x=cutoff, line_dash="dash", line_color="#dc2626", annotation_text=f"cutoff_len {cutoff}")
    figure.update_layout(
        barmode="overlay",
        title=alert(lang, "data_hist_title", rows=stats.get("rows", 0), cutoff=cutoff),
        xaxis_title=alert(lang, "data_hist_x"),
        yaxis_title=alert(lang, "data_hist_y"),
        height=340,
        margin={"l": 50, "r": 20, "t": 50, "b": 40},
        legend={"orientation": "h", "y": -0.2},
    )
    return figure


def length_info_html(lang: str | None, stats: dict[str, Any]) -> str:
    """Truncated samples and tokens lost, the padding share per batch size (unpacked, packed), what packing does."""
    rows = int(stats.get("rows") or 0)
    share = stats.get("truncated_samples", 0) / rows if rows else 0.0
    lines = [
        alert(
            lang,
            "data_truncated",
            count=stats.get("truncated_samples", 0),
            share=f"{share:.1%}",
            lost=stats.get("truncated_tokens", 0),
            cutoff=stats.get("cutoff_len", 0),
        ),
    ]
    if "packed_sequences" in stats:
        lines.append(
            alert(
                lang,
                "data_packing",
                rows=rows,
                packed=stats["packed_sequences"],
                cutoff=stats.get("cutoff_len", 0),
                before=f"{stats.get('padding_fraction', 0):.1%}",
                after=f"{stats['padding_fraction_packed']:.1%}",
            )
        )
    by_size = stats.get("padding_by_batch_size") or {}
    packed = any("packed" in value for value in by_size.values())
    head = [alert(lang, "data_pad_batch"), alert(lang, "data_pad_unpacked")]
    if packed:
        head.append(alert(lang, "data_pad_packed"))
    table = ["<table class='lb-padtable'><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>"]
    for size, value in by_size.items():
        cells = [size, f"{value.get('unpacked', 0):.1%}"] + ([f"{value.get('packed', 0):.1%}"] if packed else [])
        table.append("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in cells) + "</tr>")
    table.append("</table>")
    text = "".join(f"<div>{escape(line)}</div>" for line in lines)
    return f'<div class="lb-lenfacts" id="length_facts">{text}{"".join(table)}</div>'
