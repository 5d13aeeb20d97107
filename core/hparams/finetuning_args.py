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
    finetuning_type: Literal["lora", "freeze", "full", "oft"] = field(
        default="lora",
        metadata=_help(
            "Method: lora (train small adapters), freeze (train the last layers only), full (all weights), "
            "oft (orthogonal fine-tuning adapters through peft)."
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
    early_stopping_patience: int | None = field(
        default=None,
        metadata=_help(
            "Stop training when metric_for_best_model (default: eval loss) has not improved for this many "
            "evaluations in a row; needs eval_strategy steps or epoch and held-out data. LLaMA-Factory's "
            "early_stopping_steps is this key. With load_best_model_at_end the final model is the best checkpoint."
        ),
    )
    create_new_adapter: bool = field(
        default=False,
        metadata=_help(
            "lora: with adapter_name_or_path, train a fresh adapter on top instead of continuing the last."
        ),
    )
    use_galore: bool = field(
        default=False,
        metadata=_help("full: GaLore optimizer (gradients projected to a low rank; galore-torch, the optim extra)."),
    )
    galore_target: str = field(
        default="all", metadata=_help("GaLore: comma list of module names projected; all = every linear layer.")
    )
    galore_rank: int = field(default=16, metadata=_help("GaLore: rank of the gradient projection."))
    galore_update_interval: int = field(
        default=200, metadata=_help("GaLore: steps between recomputations of the projection.")
    )
    galore_scale: float = field(default=2.0, metadata=_help("GaLore: scale of the projected update."))
    galore_proj_type: Literal["std", "reverse_std", "right", "left", "full"] = field(
        default="std", metadata=_help("GaLore: projection type.")
    )
    galore_layerwise: bool = field(
        default=False, metadata=_help("GaLore: update layer by layer to save more memory (no gradient accumulation).")
    )
    use_apollo: bool = field(
        default=False,
        metadata=_help("full: APOLLO optimizer (SGD-like memory, AdamW-like results; apollo-torch, optim extra)."),
    )
    apollo_target: str = field(
        default="all", metadata=_help("APOLLO: comma list of module names; all = every linear layer.")
    )
    apollo_rank: int = field(default=16, metadata=_help("APOLLO: rank of the auxiliary space."))
    apollo_update_interval: int = field(default=200, metadata=_help("APOLLO: steps between projection updates."))
    apollo_scale: float = field(default=32.0, metadata=_help("APOLLO: scale of the update."))
    apollo_proj: Literal["svd", "random"] = field(default="random", metadata=_help("APOLLO: projection kind."))
    apollo_proj_type: Literal["std", "right", "left"] = field(
        default="std", metadata=_help("APOLLO: projection type.")
    )
    apollo_scale_type: Literal["channel", "tensor"] = field(
        default="channel", metadata=_help("APOLLO: scaling per channel or per tensor.")
    )
    apollo_layerwise: bool = field(default=False, metadata=_help("APOLLO: update layer by layer."))
    apollo_scale_front: bool = field(
        default=False, metadata=_help("APOLLO: scale the gradient before the norm-growth limiter.")
    )
    use_badam: bool = field(
        default=False,
        metadata=_help("full: BAdam, one decoder layer trained at a time with Adam (badam, the optim extra)."),
    )
    badam_mode: Literal["layer"] = field(default="layer", metadata=_help("BAdam: blocks are decoder layers."))
    badam_start_block: int | None = field(default=None, metadata=_help("BAdam: first layer trained. None: by mode."))
    badam_switch_mode: Literal["ascending", "descending", "random", "fixed"] = field(
        default="ascending", metadata=_help("BAdam: order in which layers take turns.")
    )
    badam_switch_interval: int = field(default=50, metadata=_help("BAdam: steps before the next layer's turn."))
    badam_verbose: int = field(default=0, metadata=_help("BAdam: 0 quiet, 1 log each switch, 2 more."))
    use_adam_mini: bool = field(
        default=False, metadata=_help("Adam-mini optimizer: about half of AdamW's state (adam-mini, the optim extra).")
    )
    use_muon: bool = field(
        default=False,
        metadata=_help("Muon optimizer for the hidden weight matrices, AdamW for the rest (torch >= 2.9)."),
    )
    use_llama_pro: bool = field(
        default=False,
        metadata=_help(
            "freeze: LLaMA Pro, train only freeze_trainable_layers layers spread evenly over the model (the blocks "
            "added by `llamafactory-cli expand`)."
        ),
    )
    use_dft_loss: bool = field(
        default=False, metadata=_help("sft: DFT loss, each token's loss scaled by its (detached) probability.")
    )
    use_eaft_loss: bool = field(
        default=False,
        metadata=_help("sft: EAFT loss, each token's loss scaled by the entropy of the model's top-20 prediction."),
    )
    eaft_alpha: float = field(default=1.0, metadata=_help("sft with use_eaft_loss: power of the entropy weight."))
    use_asft_loss: bool = field(
        default=False,
        metadata=_help("sft: ASFT loss, the DFT loss plus asft_alpha x KL(reference || policy) per token."),
    )
    asft_alpha: float = field(default=0.1, metadata=_help("sft with use_asft_loss: weight of the KL anchor."))
    oft_rank: int = field(
        default=0, metadata=_help("oft: number of orthogonal blocks per layer; 0 = set by oft_block_size instead.")
    )
    oft_block_size: int = field(
        default=32, metadata=_help("oft: size of each orthogonal block; 0 = set by oft_rank instead.")
    )
    oft_target: str = field(
        default="all", metadata=_help("oft: comma list of module names to adapt; all = every linear layer.")
    )
    module_dropout: float = field(
        default=0.0, metadata=_help("oft: probability of dropping a whole block, 0 to below 1.")
    )
    use_swanlab: bool = field(
        default=False, metadata=_help("Log to SwanLab (adds swanlab to report_to; key in SWANLAB_API_KEY).")
    )
    swanlab_project: str | None = field(default=None, metadata=_help("SwanLab project name."))
    swanlab_workspace: str | None = field(default=None, metadata=_help("SwanLab workspace (team) name."))
    swanlab_run_name: str | None = field(default=None, metadata=_help("SwanLab experiment name."))
    swanlab_mode: Literal["cloud", "local", "offline", "disabled"] | None = field(
        default=None, metadata=_help("SwanLab mode: cloud, local, offline or disabled.")
    )
    swanlab_logdir: str | None = field(default=None, metadata=_help("SwanLab folder for local / offline logs."))
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

    # Set by get_train_args from push_to_hub: the workflow pushes once when training has ended.
    push_at_end: bool = field(
        default=False,
        init=False,
        metadata={"help": "Set by the parser from push_to_hub: one upload of output_dir when training ends."},
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
