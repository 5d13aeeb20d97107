"""LLaMA Pro: the expanded model answers exactly as the original, and use_llama_pro trains only the added blocks."""

from __future__ import annotations

import pytest
import torch

from core.cli import main
from core.model.adapter import trainable_layer_ids


def test_llama_pro_picks_the_last_layer_of_every_group():
    assert trainable_layer_ids(6, 2, llama_pro=True) == {2, 5}
    assert trainable_layer_ids(4, 2, llama_pro=False) == {2, 3}
    with pytest.raises(ValueError, match="freeze_trainable_layers: received 4"):
        trainable_layer_ids(6, 4, llama_pro=True)


@pytest.mark.slow
def test_expanded_model_is_the_identity_then_only_new_blocks_train(demo_model, tmp_path, make_args, capsys):
    from transformers import AutoModelForCausalLM

    from core import run_exp
    from core.train.callbacks import read_log_records

    expanded = tmp_path / "expanded"
    assert main(["expand", str(demo_model), str(expanded), "--num-expand", "2"]) == 0
    assert "use_llama_pro: true" in capsys.readouterr().out
    original = AutoModelForCausalLM.from_pretrained(demo_model).eval()
    bigger = AutoModelForCausalLM.from_pretrained(expanded).eval()
    assert bigger.config.num_hidden_layers == 4
    ids = torch.tensor([[5, 17, 42, 99, 7]])
    with torch.no_grad():
        assert torch.allclose(original(ids).logits, bigger(ids).logits, atol=1e-5)

    # A --num-expand that does not divide the layers is one clear message, exit 2.
    assert main(["expand", str(demo_model), str(tmp_path / "other"), "--num-expand", "3"]) == 2
    assert "--num-expand: received 3" in capsys.readouterr().err

    args = make_args(
        "sft",
        model_name_or_path=str(expanded),
        finetuning_type="freeze",
        use_llama_pro=True,
        freeze_trainable_layers=2,
        max_steps=12,
        logging_steps=4,
        learning_rate=1e-2,
    )
    run_exp(args)
    trained = AutoModelForCausalLM.from_pretrained(args["output_dir"])
    before, after = bigger.state_dict(), trained.state_dict()
    changed = {
        name.split(".")[2] for name in before if "layers." in name and not torch.equal(before[name], after[name])
    }
    outside = [n for n in before if "layers." not in n and not torch.equal(before[n], after[n])]
    # Layers 1 and 3 are the added blocks (the last of each group of two); 0 and 2 are the original layers.
    assert changed == {"1", "3"} and not outside
    losses = [r["loss"] for r in read_log_records(f"{args['output_dir']}/trainer_log.jsonl") if "loss" in r]
    assert losses[-1] < losses[0], losses
