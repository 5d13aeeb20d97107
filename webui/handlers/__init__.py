"""The board's handlers: what each tab does, one module per tab beside its layout in webui/tabs/.

    top.py       top bar and page load          train.py     Train tab: data, YAML, Start / Abort
    preview.py   Train tab's dataset preview    live.py      Train tab's live view (poll: log, progress, charts)
    runs.py      Runs tab                        evaluate.py  Evaluate & Predict tab
    chat.py      Chat tab                        export.py    Export tab
Shared: events.py (bind a handler to a gradio event, alerts), choices.py (choices and defaults of controls),
render.py (progress bar, charts, cells), base.py / jobview.py (the state the tabs' handlers share).
webui/board.py composes them into `Board` and `Infer`.
"""
