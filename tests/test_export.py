"""Export: the merged model, loaded with plain transformers, computes what base + adapter (peft) computes; shards
follow export_size; a non-empty export_dir is refused; the hub push never runs without HF_TOKEN."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def demo_model(tmp_path_factory) -> Path:
    """The tiny demo model, built into a temporary LLAMABOARD_CACHE for this module."""
    previous = os.environ.get("LLAMABOARD_CACHE")
    os.environ["LLAMABOARD_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    from core.demo import ensure_demo_model

    yield ensure_demo_model("tiny")
    if previous is None:
        os.environ.pop("LLAMABOARD_CACHE", None)
    else:
        os.environ["LLAMABOARD_CACHE"] = previous


def make_adapter(model_path: Path, out: Path, seed: int = 0) -> Path:
    """A LoRA adapter with random A and B (B is zero after a normal init): merging it must change the outputs."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_path)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def adapters(demo_model, tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("adapters")
    return [make_adapter(demo_model, root / "a", seed=0), make_adapter(demo_model, root / "b", seed=1)]


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_exported_model_matches_base_plus_adapters_and_shards_follow_export_size(
    demo_model, adapters, tmp_path, capsys
):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from core.export import export_model

    export_dir = tmp_path / "merged"
    # About 0.2 MB per shard: the tiny model (~0.6 MB in float32) must be split into several files.
    export_model(
        {
            "model_name_or_path": "demo",
            "adapter_name_or_path": ",".join(str(a) for a in adapters),
            "template": "chatml",
            "infer_dtype": "float32",
            "export_dir": str(export_dir),
            "export_size": 0.0002,
        }
    )
    out = capsys.readouterr().out
    assert "[export] step 2/5: loading the model in float32, merging 2 adapter(s)" in out
    assert f"[export] done: {export_dir}" in out

    shards = sorted(export_dir.glob("model-*.safetensors"))
    assert len(shards) >= 3
    assert all(p.stat().st_size <= 0.0002e9 + 20_000 for p in shards)  # a shard holds whole tensors only
    index = json.loads((export_dir / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == {p.name for p in shards}
    assert not list(export_dir.glob("*.bin"))
    assert (export_dir / "chat_template.jinja").is_file()

    ids = torch.tensor([[2, 40, 41, 42, 43, 3, 2, 50, 51]])
    exported = AutoModelForCausalLM.from_pretrained(export_dir)
    base = AutoModelForCausalLM.from_pretrained(demo_model)
    plain = _logits(base, ids)
    reference = PeftModel.from_pretrained(base, adapters[0]).merge_and_unload()
    reference = PeftModel.from_pretrained(reference, adapters[1])
    expected = _logits(reference, ids)
    got = _logits(exported, ids)
    assert not torch.allclose(plain, expected, atol=1e-3)  # the adapters matter, so the comparison means something
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)

    tokenizer = AutoTokenizer.from_pretrained(export_dir)
    assert tokenizer.chat_template and tokenizer.eos_token == "<|im_end|>"


def test_bfloat16_export_has_bfloat16_weights(demo_model, adapters, tmp_path):
    from safetensors import safe_open

    from core.export import export_model

    export_dir = export_model(
        {
            "model_name_or_path": "demo",
            "adapter_name_or_path": str(adapters[0]),
            "infer_dtype": "bfloat16",
            "export_dir": str(tmp_path / "bf16"),
        }
    )
    (shard,) = export_dir.glob("*.safetensors")
    with safe_open(shard, "pt") as handle:
        dtypes = {handle.get_tensor(name).dtype for name in handle.keys()}  # noqa: SIM118 - safe_open has no iter
    assert dtypes == {torch.bfloat16}
    assert json.loads((export_dir / "config.json").read_text())["dtype"] == "bfloat16"


def test_non_empty_export_dir_is_refused_unless_overwrite(demo_model, tmp_path, capsys):
    from core.cli import main

    export_dir = tmp_path / "taken"
    export_dir.mkdir()
    (export_dir / "notes.txt").write_text("mine")
    (export_dir / "job.yaml").write_text("{}")  # an older board's job file does not count
    argv = ["export", "model_name_or_path=demo", f"export_dir={export_dir}"]

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"export_dir: {export_dir} is not empty (notes.txt)" in err and "export_overwrite: true" in err
    assert sorted(p.name for p in export_dir.iterdir()) == ["job.yaml", "notes.txt"]

    assert main([*argv, "export_overwrite=true"]) == 0
    assert (export_dir / "model.safetensors").is_file() and (export_dir / "notes.txt").is_file()
    done = capsys.readouterr().out.strip().splitlines()[-1]
    assert done.startswith(f"[export] done: {export_dir} ({len(list(export_dir.iterdir()))} files, ")


def test_the_export_folder_gets_the_model_tokenizer_and_config_only(demo_model, tmp_path, capsys):
    from core.cli import main

    export_dir = tmp_path / "merged"
    assert main(["export", "model_name_or_path=demo", f"export_dir={export_dir}"]) == 0
    names = sorted(p.name for p in export_dir.iterdir())
    assert names == [
        "chat_template.jinja",
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith(f"[export] done: {export_dir} (6 files, ")


def test_hub_push_needs_hf_token_and_checks_before_loading(demo_model, tmp_path, monkeypatch, capsys):
    from core.cli import main

    monkeypatch.delenv("HF_TOKEN", raising=False)
    argv = ["export", "model_name_or_path=demo", f"export_dir={tmp_path / 'out'}", "export_hub_model_id=me/demo"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "export_hub_model_id: me/demo needs a Hugging Face token" in err and "HF_TOKEN" in err
    assert not (tmp_path / "out").exists()

    monkeypatch.setenv("HF_TOKEN", "hf_secret_value")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert main(argv) == 2
    assert "cannot be pushed with HF_HUB_OFFLINE=1" in capsys.readouterr().err


def test_missing_export_dir_and_wrong_model_path_are_named(tmp_path, capsys):
    from core.cli import main

    assert main(["export", "model_name_or_path=demo"]) == 2
    assert "export_dir: missing" in capsys.readouterr().err
    assert main(["export", "model_name_or_path=/no/such/model", f"export_dir={tmp_path / 'x'}"]) == 2
    assert "model_name_or_path: /no/such/model does not exist" in capsys.readouterr().err


def test_auto_dtype_is_the_dtype_in_the_models_config(demo_model, tmp_path):
    import shutil

    from safetensors import safe_open

    from core.export import export_model

    model = tmp_path / "bf16-model"
    shutil.copytree(demo_model, model)
    config = json.loads((model / "config.json").read_text())
    config["dtype"] = "bfloat16"
    (model / "config.json").write_text(json.dumps(config))

    export_dir = export_model({"model_name_or_path": str(model), "export_dir": str(tmp_path / "out")})
    (shard,) = export_dir.glob("*.safetensors")
    with safe_open(shard, "pt") as handle:
        assert {handle.get_tensor(name).dtype for name in handle.keys()} == {torch.bfloat16}  # noqa: SIM118
