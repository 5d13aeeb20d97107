"""The board's gr.Blocks: gradio's, less the cost of outputs an event leaves alone.

A handler returns updates for the outputs it changes; gradio fills every other output with `gr.skip()` and, for
each of those, builds a fresh component (a new instance with the same arguments, its config, its API schema, a
random id) to hold in the session, then sends `{"__type__": "update"}`, which the browser ignores. The page-load
event has ~170 outputs and changes a few: ~250 ms of the board's CPU a page load went into components nobody
sees, under the GIL, so concurrent page loads waited for each other. `BoardBlocks` answers those outputs with
exactly what gradio would send for them (`postprocess_update_dict` on the output as it stands) and hands only
the outputs that change to gradio. The session keeps the component it already had, which is what the rebuilt
one would have been: same arguments (gradio reads `state.get(id, block)` for the next update).
"""

from __future__ import annotations

import copy
from typing import Any

import gradio as gr
from gradio import utils
from gradio.blocks import Block, postprocess_update_dict
from gradio.processing_utils import async_move_files_to_cache

NO_OP = {"__type__": "update"}


def is_no_op(prediction: Any) -> bool:
    """A prop update that changes nothing (gr.skip(), gr.update(), gr.update(visible=None))."""
    return utils.is_prop_update(prediction) and utils.delete_none(dict(prediction), skip_value=True) == NO_OP


class BoardBlocks(gr.Blocks):
    async def postprocess_data(self, block_fn: Any, predictions: Any, state: Any) -> list[Any]:
        outputs = list(block_fn.outputs)
        if not (
            isinstance(predictions, dict)
            and not utils.is_prop_update(predictions)
            and len(outputs) > 1
            and not block_fn.batch
            and not block_fn.is_validator_function
            and predictions
            and all(isinstance(key, Block) for key in predictions)
        ):
            return await super().postprocess_data(block_fn, predictions, state)
        by_id = {key._id: value for key, value in predictions.items()}
        if len(by_id) != len(predictions) or not set(by_id) <= {block._id for block in outputs}:
            return await super().postprocess_data(block_fn, predictions, state)  # gradio's own matching rules
        skipped = [
            i for i, block in enumerate(outputs) if not block.stateful and is_no_op(by_id.get(block._id, NO_OP))
        ]
        if not skipped:
            return await super().postprocess_data(block_fn, predictions, state)
        kept = [block for i, block in enumerate(outputs) if i not in set(skipped)]
        answers: dict[int, Any] = {}
        if kept:
            view = copy.copy(block_fn)
            view.outputs = kept
            rest = {block: by_id.get(block._id, gr.skip()) for block in kept}
            if len(kept) == 1:
                rest = next(iter(rest.values()))  # gradio wraps a single output's prediction itself
            done = await super().postprocess_data(view, rest, state)
            answers = dict(zip((i for i in range(len(outputs)) if i not in set(skipped)), done, strict=True))
        for i in skipped:
            block = outputs[i]
            answer = postprocess_update_dict(block, dict(NO_OP), postprocess=block_fn.postprocess)
            answers[i] = await async_move_files_to_cache(answer, block, postprocess=True)
        return [answers[i] for i in range(len(outputs))]
