"""What to train and with which method: FinetuningArguments. Pure: no training stack imported."""

from dataclasses import dataclass, field
from typing import Literal

from core.hparams.keys import split_arg


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class FinetuningArguments:
    """Stage, method (lora / freeze / full), LoRA and freeze settings, preference and PPO settings.

    Defaults are LLaMA-Factory's. `lora_alpha: null` becomes 2 * lora_rank after parsing, as there.
    """

    stage: Literal["pt", "sft", "rm", "ppo", "dpo", "kto"] = field(
        default="sft",
        metadata=_help(
            "Training stage: pt (pretraining on text), sft (supervised fine-tuning), rm (reward model), ppo, dpo, kto."
        ),
    )
    finetuning_type: Literal["lora", "freeze", "full"] = field(
        default="lora",
        metadata=_help(
            "Method: lora (train small adapters), freeze (train the last layers only), full (all weights)."
        ),
    )
    freeze_trainable_layers: int = field(
        default=2,
        metadata=_help(
            "freeze: how many layers to train, counted from the end if positive, from the start if negative."
        ),
    )
    freeze_trainable_modules: str = field(
        default="all",
        metadata=_help("freeze: comma list of module names trained inside those layers (mlp, self_attn...); all."),
    )
    freeze_extra_modules: str | None = field(
        default=None,
        metadata=_help("freeze: comma list of modules outside the layers to train too (e.g. embed_tokens, lm_head)."),
    )
    additional_target: str | None = field(
        default=None,
        metadata=_help("lora: comma list of modules trained in full and saved with the adapter (e.g. lm_head)."),
    )
    lora_rank: int = field(default=8, metadata=_help("lora: rank of the adapter matrices."))
    lora_alpha: int | None = field(
        default=None, metadata=_help("lora: scale numerator (scale = alpha / rank). None: 2 * lora_rank.")
    )
    lora_dropout: float = field(default=0.0, metadata=_help("lora: dropout on the adapter input, 0 to below 1."))
    lora_target: str = field(
        default="all",
        metadata=_help("lora: comma list of module names to adapt (q_proj, v_proj...); all = every linear layer."),
    )
    loraplus_lr_ratio: float | None = field(
        default=None, metadata=_help("lora: LoRA+ ratio, B matrices learn this many times faster. None: off.")
    )
    loraplus_lr_embedding: float = field(
        default=1e-6, metadata=_help("lora: LoRA+ learning rate of embedding adapters.")
    )
    use_rslora: bool = field(default=False, metadata=_help("lora: rank-stabilized scaling alpha / sqrt(rank)."))
    use_dora: bool = field(default=False, metadata=_help("lora: weight-decomposed adapters (DoRA)."))
    pissa_init: bool = field(
        default=False, metadata=_help("lora: initialize adapters from the principal singular vectors (PiSSA).")
    )
    pissa_iter: int = field(default=16, metadata=_help("lora: fast-SVD iterations for PiSSA; -1 = exact SVD (slow)."))
    pissa_convert: bool = field(
        default=False, metadata=_help("lora: save the PiSSA adapter converted to a plain LoRA adapter.")
    )
    create_new_adapter: bool = field(
        default=False,
        metadata=_help(
            "lora: with adapter_name_or_path, train a fresh adapter on top instead of continuing the last."
        ),
    )
    pref_beta: float = field(
        default=0.1, metadata=_help("dpo / kto: beta, how far the policy may move from the reference.")
    )
    pref_ftx: float = field(
        default=0.0, metadata=_help("dpo / kto: weight of an added sft loss on the chosen answers. 0: none.")
    )
    pref_loss: Literal["sigmoid", "hinge", "ipo", "orpo", "simpo"] = field(
        default="sigmoid",
        metadata=_help("dpo: loss type; orpo and simpo need no reference model."),
    )
    dpo_label_smoothing: float = field(
        default=0.0, metadata=_help("dpo (sigmoid loss): assumed share of flipped labels, 0 to 0.5.")
    )
    simpo_gamma: float = field(default=0.5, metadata=_help("dpo with pref_loss simpo: target reward margin."))
    kto_chosen_weight: float = field(default=1.0, metadata=_help("kto: loss weight of desirable samples."))
    kto_rejected_weight: float = field(default=1.0, metadata=_help("kto: loss weight of undesirable samples."))
    ppo_buffer_size: int = field(
        default=1, metadata=_help("ppo: mini-batches collected before each optimization pass.")
    )
    ppo_epochs: int = field(default=4, metadata=_help("ppo: optimization epochs over each collected batch."))
    ppo_score_norm: bool = field(default=False, metadata=_help("ppo: normalize reward scores."))
    ppo_target: float = field(default=6.0, metadata=_help("ppo: target KL for the adaptive KL controller."))
    ppo_whiten_rewards: bool = field(default=False, metadata=_help("ppo: whiten rewards before advantages."))
    ref_model: str | None = field(
        default=None,
        metadata=_help("dpo / kto / ppo: reference model path. None: the base model (with adapters off for lora)."),
    )
    ref_model_adapters: str | None = field(
        default=None, metadata=_help("dpo / kto / ppo: comma list of adapters applied to ref_model.")
    )
    reward_model: str | None = field(
        default=None,
        metadata=_help("ppo: reward model path (an rm run's output_dir for reward_model_type lora). Required by ppo."),
    )
    reward_model_adapters: str | None = field(
        default=None, metadata=_help("ppo: comma list of adapters applied to reward_model (full type).")
    )
    reward_model_type: Literal["lora", "full", "rule"] = field(
        default="lora",
        metadata=_help(
            "ppo: lora = reward_model is a LoRA rm adapter on the policy's base model; full = a complete model; "
            "rule = reward_model names a built-in rule (reference_f1, uppercase) that scores answers without a model."
        ),
    )
    pure_bf16: bool = field(
        default=False, metadata=_help("Keep weights in bf16 and train in bf16 without fp32 master weights.")
    )
    plot_loss: bool = field(
        default=False, metadata=_help("Save training_loss.png (and eval) in output_dir at the end of training.")
    )
    compute_accuracy: bool = field(
        default=False, metadata=_help("sft: report token accuracy at evaluation (not with predict_with_generate).")
    )
    disable_shuffling: bool = field(
        default=False, metadata=_help("Read training samples in dataset order instead of shuffled.")
    )
    include_effective_tokens_per_second: bool = field(
        default=False, metadata=_help("Report effective (non-padding) tokens per second in the training results.")
    )

    def __post_init__(self) -> None:
        if self.lora_alpha is None:
            self.lora_alpha = 2 * self.lora_rank

    @property
    def lora_targets(self) -> list[str]:
        """lora_target as a list (["all"] for all)."""
        return split_arg(self.lora_target)

    @property
    def use_ref_model(self) -> bool:
        """dpo / kto need a reference model unless the loss is reference-free (orpo, simpo)."""
        return self.stage in ("dpo", "kto") and self.pref_loss not in ("orpo", "simpo")
