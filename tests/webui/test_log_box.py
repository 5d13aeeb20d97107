"""The log box reads in time order: the board's own `[board]` lines sit where they happened in the job's log."""

from __future__ import annotations

from webui.handlers.events import compose_output
from webui.handlers.live import LiveView

LOG = "step 2/4 | loss 1.5\nstep 4/4 | loss 1.2\n***** train metrics *****\n  train_loss = 1.3\n"


def test_job_started_comes_before_the_jobs_output_and_later_notes_after_it():
    run = "/saves/demo/lora/run"
    notes = [
        {"text": "Job started in /saves/demo/lora/run.", "run": run, "at": 0},  # Start: the log was empty
        {"text": "Nothing to abort.", "run": run, "at": len("step 2/4 | loss 1.5\n")},
        "an older note without a position",
    ]
    shown = compose_output(LOG, notes, end=len(LOG.encode()), run=run).splitlines()
    assert shown == [
        "[board] Job started in /saves/demo/lora/run.",
        "step 2/4 | loss 1.5",
        "[board] Nothing to abort.",
        "step 4/4 | loss 1.2",
        "***** train metrics *****",
        "  train_loss = 1.3",
        "[board] an older note without a position",
    ]


def test_notes_about_another_run_or_from_before_the_tail_are_not_misplaced():
    note = {"text": "Job started.", "run": "/saves/a", "at": 0}
    shown = compose_output(LOG, [note], end=len(LOG.encode()), run="/saves/b")
    assert shown.splitlines()[-1] == "[board] Job started."
    # The tail shows the last bytes of a long log: a note from before them goes first.
    note = {"text": "Job started.", "run": "/saves/a", "at": 5}
    assert compose_output(LOG, [note], end=10_000, run="/saves/a").splitlines()[0] == "[board] Job started."
    assert compose_output("", [note]) == "[board] Job started."


def test_a_note_is_placed_at_the_size_of_the_viewed_runs_log(tmp_path):
    board = LiveView.__new__(LiveView)  # log_size reads only the run folder
    assert board.log_size(None) is None
    assert board.log_size(tmp_path) == 0  # a new run: no job.log yet, so its notes come first
    (tmp_path / "job.log").write_text(LOG)
    assert board.log_size(str(tmp_path)) == len(LOG.encode())
