"""core.model on the tiny demo model: which parameters each method trains, adapters, value head, clear errors."""

from __future__ import annotations

import pytest
import torch

from core.hparams.finetuning_args import FinetuningArguments
from core.hparams.model_args import ModelArguments

cuda = torch.cuda.is_available()


def _load(finetuning_type="lora", add_valuehead=False, is_trainable=True, model_kw=None, **finetuning_kw):
    from core.model import load_model, load_tokenizer

    model_kw = dict(model_kw or {})
    compute_dtype = model_kw.pop("compute_dtype", None)
    model_args = ModelArguments(model_name_or_path="demo", **model_kw)
    model_args.compute_dtype = compute_dtype  # set by get_train_args in a real run
    finetuning_args = FinetuningArguments(finetuning_type=finetuning_type, **finetuning_kw)
    tokenizer = load_tokenizer(model_args)
    return load_model(tokenizer, model_args, finetuning_args, is_trainable, add_valuehead=add_valuehead)


def _trainable(model) -> set[str]:
    return {name for name, param in model.named_parameters() if param.requires_grad}


def _inputs() -> dict[str, torch.Tensor]:
    return {
        "input_ids": torch.tensor([[5, 17, 42, 9, 3], [8, 8, 30, 4, 0]]),
        "attention_mask": torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]),
    }


def test_lora_all_targets_every_linear_layer_and_trains_only_adapters(demo_model):
    model = _load("lora", lora_rank=4)
    trainable = _trainable(model)
    assert trainable and all("lora_" in name for name in trainable)
    targets = set(model.peft_config["default"].target_modules)
    assert {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"} <= targets
    assert "lm_head" not in targets
    assert model.peft_config["default"].lora_alpha == 8  # lora_alpha unset -> 2 * lora_rank


def test_lora_named_targets_rslora_dora_and_additional_target(demo_model):
    model = _load("lora", lora_target="q_proj,v_proj", use_rslora=True, use_dora=True, additional_target="norm")
    config = model.peft_config["default"]
    assert set(config.target_modules) == {"q_proj", "v_proj"}
    assert config.use_rslora and config.use_dora
    trainable = _trainable(model)
    assert not any("k_proj" in name or "mlp" in name for name in trainable)
    assert any("lora_magnitude" in name for name in trainable)  # DoRA's magnitude vector
    assert any(name.endswith("model.norm.modules_to_save.default.weight") for name in trainable)


def test_lora_unknown_target_names_the_choices(demo_model):
    with pytest.raises(ValueError, match=r"lora_target: received qkv_proj .*q_proj"):
        _load("lora", lora_target="qkv_proj")


def test_freeze_counts_layers_from_the_end_or_the_start(demo_model):
    last = _trainable(_load("freeze", freeze_trainable_layers=1))
    assert last and all(".layers.1." in name for name in last)
    first = _trainable(_load("freeze", freeze_trainable_layers=-1))
    assert first and all(".layers.0." in name for name in first)


def test_freeze_modules_and_extra_modules(demo_model):
    trainable = _trainable(
        _load("freeze", freeze_trainable_layers=2, freeze_trainable_modules="mlp", freeze_extra_modules="embed_tokens")
    )
    assert any(".layers.0.mlp." in n for n in trainable) and any(".layers.1.mlp." in n for n in trainable)
    assert not any("self_attn" in n or "layernorm" in n for n in trainable)
    assert any("embed_tokens" in n for n in trainable)
    with pytest.raises(ValueError, match="freeze_trainable_modules: received attn"):
        _load("freeze", freeze_trainable_modules="attn")
    with pytest.raises(ValueError, match="freeze_trainable_layers: received 5"):
        _load("freeze", freeze_trainable_layers=5)


def test_full_trains_everything(demo_model):
    model = _load("full")
    assert _trainable(model) == {name for name, _ in model.named_parameters()}
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_inference_load_is_frozen_and_in_eval_mode(demo_model):
    model = _load("full", is_trainable=False)
    assert not _trainable(model) and not model.training


def test_continue_adapter_or_merge_it_under_a_new_one(demo_model, tmp_path):
    model = _load("lora", lora_rank=4)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.5)
    model.eval()
    expected = model(**_inputs()).logits
    model.save_pretrained(tmp_path / "adapter")

    continued = _load("lora", model_kw={"adapter_name_or_path": str(tmp_path / "adapter")})
    assert _trainable(continued) and all("lora_" in n for n in _trainable(continued))
    continued.eval()
    torch.testing.assert_close(continued(**_inputs()).logits, expected)

    # A new adapter on top: the old one is merged into the base, the new one starts at zero (same outputs).
    stacked = _load("lora", create_new_adapter=True, model_kw={"adapter_name_or_path": str(tmp_path / "adapter")})
    stacked.eval()
    torch.testing.assert_close(stacked(**_inputs()).logits, expected, atol=1e-4, rtol=1e-4)
    assert not any("lora_B" in n and p.abs().sum() > 0 for n, p in stacked.named_parameters())


def test_value_head_round_trip_with_lora(demo_model, tmp_path):
    from core.model.valuehead import VALUE_HEAD_FILE, ValueHeadModel

    model = _load("lora", add_valuehead=True)
    assert isinstance(model, ValueHeadModel)
    assert {n for n in _trainable(model) if "lora_" not in n} == {"v_head.weight", "v_head.bias"}
    with torch.no_grad():
        model.v_head.bias.fill_(0.75)
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.5)
    model.eval()
    logits, values = model(**_inputs())
    assert logits.shape[:2] == values.shape == (2, 5)
    model.save_pretrained(tmp_path / "rm")
    assert (tmp_path / "rm" / VALUE_HEAD_FILE).is_file() and (tmp_path / "rm" / "adapter_model.safetensors").is_file()

    reloaded = _load(
        "lora", add_valuehead=True, is_trainable=False, model_kw={"adapter_name_or_path": str(tmp_path / "rm")}
    )
    _, reloaded_values = reloaded(**_inputs(), return_logits=False)
    torch.testing.assert_close(reloaded_values, values)


def test_reward_model_without_value_head_is_a_clear_error(demo_model):
    with pytest.raises(FileNotFoundError, match="value_head.safetensors"):
        _load("full", add_valuehead=True, is_trainable=False)


def test_missing_model_path_names_it(tmp_path):
    from core.model import load_tokenizer

    missing = tmp_path / "no-such-model"
    with pytest.raises(FileNotFoundError, match=f"model_name_or_path: {missing} does not exist"):
        load_tokenizer(ModelArguments(model_name_or_path=str(missing)))


@pytest.mark.skipif(cuda, reason="the CPU-only error")
def test_quantization_on_cpu_fails_before_loading_weights(demo_model, monkeypatch):
    import transformers

    def no_load(*args, **kwargs):
        raise AssertionError("weights were loaded before the quantization check")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_load)
    with pytest.raises(ValueError, match="quantization_bit: 4 needs a CUDA GPU"):
        _load("lora", model_kw={"quantization_bit": 4})


@pytest.mark.skipif(cuda, reason="the CPU-only error")
def test_compute_dtype_maps_and_rejects_fp16_on_cpu():
    from types import SimpleNamespace

    from core.model import infer_compute_dtype

    plain = FinetuningArguments()
    assert infer_compute_dtype(SimpleNamespace(bf16=False, fp16=False), plain) is torch.float32
    assert infer_compute_dtype(SimpleNamespace(bf16=True, fp16=False), plain) is torch.bfloat16
    assert (
        infer_compute_dtype(SimpleNamespace(bf16=False, fp16=False), FinetuningArguments(pure_bf16=True))
        is torch.bfloat16
    )
    with pytest.raises(ValueError, match="fp16: true needs a CUDA GPU"):
        infer_compute_dtype(SimpleNamespace(bf16=False, fp16=True), plain)


def test_pure_bf16_keeps_trainable_weights_in_bf16_otherwise_fp32(demo_model):
    model = _load("full", pure_bf16=True, model_kw={"compute_dtype": torch.bfloat16})
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    lora = _load("lora", model_kw={"compute_dtype": torch.bfloat16})
    assert {p.dtype for n, p in lora.named_parameters() if p.requires_grad} == {torch.float32}
    assert {p.dtype for n, p in lora.named_parameters() if not p.requires_grad} == {torch.bfloat16}


def _saved_bytes_and_grads(model, ids: torch.Tensor) -> tuple[int, dict[str, torch.Tensor]]:
    """Bytes autograd keeps for the backward pass of one bf16-autocast step (each storage once), and the gradients."""
    storages: dict[int, int] = {}

    def keep(tensor: torch.Tensor) -> torch.Tensor:
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return sum(storages.values()), grads


def test_lora_under_autocast_keeps_no_recast_copies_of_its_inputs(demo_model):
    """fp32 adapters in a bf16 model: under autocast the adapters take their input as it is, not an fp32 copy cast
    back to bf16 and kept for backward. Same gradients to the bit, less memory kept (k, v share q's input, up
    shares gate's, o's input is kept by attention)."""
    from peft.tuners.lora import Linear as LoraLinear

    torch.manual_seed(0)
    model = _load("lora", lora_rank=4, model_kw={"compute_dtype": torch.bfloat16})
    ids = torch.randint(3, 500, (4, 32))
    lean, lean_grads = _saved_bytes_and_grads(model, ids)
    layers = [module for module in model.modules() if type(module) is LoraLinear]
    assert len(layers) == 14  # 7 linear layers in each of the 2 decoder layers
    for module in layers:  # peft's own behaviour: cast every input to the adapter's fp32
        module._forward_pre_hooks.clear()
        module.cast_input_dtype_enabled = True
    copied, copied_grads = _saved_bytes_and_grads(model, ids)
    assert lean_grads.keys() == copied_grads.keys() and len(lean_grads) == 28
    assert all(torch.equal(lean_grads[name], copied_grads[name]) for name in lean_grads)
    hidden = model.config.hidden_size
    copies = 3 * ids.numel() * hidden * 2 * model.config.num_hidden_layers  # k, v and up at the least, in bf16
    assert copied - lean >= copies, (copied, lean)

    # Without autocast the adapters still get their input in fp32 (peft casts), and the output stays bf16.
    model.eval()
    with torch.no_grad():
        logits = _load("lora", lora_rank=4, model_kw={"compute_dtype": torch.bfloat16})(input_ids=ids).logits
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits).all()


def test_pissa_init_keeps_the_model_output(demo_model):
    base = _load("full", is_trainable=False)
    model = _load("lora", pissa_init=True, pissa_iter=-1, lora_rank=4)
    assert str(model.peft_config["default"].init_lora_weights).startswith("pissa")
    model.eval()
    torch.testing.assert_close(model(**_inputs()).logits, base(**_inputs()).logits, atol=1e-3, rtol=1e-3)


def test_loraplus_gives_b_matrices_a_larger_learning_rate(demo_model, tmp_path):
    from transformers import Trainer, TrainingArguments

    from core.train.trainer_utils import create_loraplus_optimizer

    model = _load("lora", lora_rank=4)
    trainer = Trainer(
        model=model,
        args=TrainingArguments(output_dir=str(tmp_path), learning_rate=1e-3, use_cpu=True, report_to="none"),
    )
    optimizer = create_loraplus_optimizer(trainer, FinetuningArguments(loraplus_lr_ratio=16.0))
    names = {id(p): n for n, p in model.named_parameters()}
    for group in optimizer.param_groups:
        kinds = {"B" if "lora_B" in names[id(p)] else "A" for p in group["params"]}
        assert len(kinds) == 1
        assert group["lr"] == pytest.approx(1.6e-2 if kinds == {"B"} else 1e-3)
    assert create_loraplus_optimizer(trainer, FinetuningArguments()) is None


def test_rope_scaling_stretches_positions_to_cutoff_len(demo_model):
    from core.model import load_model, load_tokenizer

    model_args = ModelArguments(model_name_or_path="demo", rope_scaling="linear")
    model_args.model_max_length = 5000  # set from cutoff_len by get_train_args
    model = load_model(load_tokenizer(model_args), model_args, FinetuningArguments(), is_trainable=True)
    assert model.config.rope_parameters["rope_type"] == "linear"
    assert model.config.rope_parameters["factor"] == 3.0
    assert model.config.max_position_embeddings == 6144
    assert model(**_inputs()).logits.shape[:2] == (2, 5)
