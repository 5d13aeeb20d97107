"""What to train and with which method: FinetuningArguments. Pure: no training stack imported."""

from dataclasses import dataclass, field
from typing import Literal

from core.hparams.keys import split_arg


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class FinetuningArguments:
    """Stage, method (lora / freeze / full), LoRA and freeze settings, preference and PPO settings.

    Defaults are LLaMA-Factory's, except `ppo_score_norm` (on here, off there: see its help).
    `lora_alpha: null` becomes 2 * lora_rank after parsing, as there.
    """

    stage: Literal["pt", "sft", "rm", "ppo", "dpo", "kto", "grpo"] = field(
        default="sft",
        metadata=_help(
            "Training stage: pt (pretraining on text), sft (supervised fine-tuning), rm (reward model), ppo, dpo, "
            "kto, grpo (reinforcement learning with rewards computed from each answer)."
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
    plan_check: bool = field(
        default=True,
        metadata=_help(
            "Before training, `llamafactory-cli train` estimates the job's memory (llamafactory-cli plan) and refuses "
            "a job that will not fit the devices (on a CPU: the machine's available memory), printing the estimate "
            "and the changes that make it fit. false (or --force on the command line): start it anyway."
        ),
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
    pref_loss: Literal["sigmoid", "hinge", "ipo", "kto_pair", "orpo", "simpo"] = field(
        default="sigmoid",
        metadata=_help("dpo: loss type; kto_pair is KTO on the pairs; orpo and simpo need no reference model."),
    )
    precompute_ref_log_probs: bool = field(
        default=False,
        metadata=_help(
            "dpo / kto: compute the frozen reference's log-probabilities once for the whole training set before "
            "the first step (cached in the run folder as ref_logps-<fingerprint>.safetensors, reused on resume and "
            "every epoch), instead of a reference forward pass in every step."
        ),
    )
    disable_dropout: bool = field(
        default=True,
        metadata=_help(
            "dpo / kto: set every dropout of the policy and the reference (lora_dropout included) to 0, so the "
            "log-probability ratios compare like with like. false: keep them."
        ),
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
    ppo_score_norm: bool = field(
        default=True,
        metadata=_help(
            "ppo: scale scores to mean 0, std 1 with running statistics before the KL penalty and advantages. "
            "On by default (LLaMA-Factory: off), so the KL penalty and the value head see one scale whatever the "
            "reward's (a rule's 0-1 share, an rm's scores a few tenths apart or several units); off: the KL "
            "coefficient is scaled to the first batch's scores instead."
        ),
    )
    ppo_target: float = field(default=6.0, metadata=_help("ppo: target KL for the adaptive KL controller."))
    ppo_whiten_rewards: bool = field(default=False, metadata=_help("ppo: whiten rewards before advantages."))
    num_generations: int = field(
        default=8,
        metadata=_help(
            "grpo: completions sampled per prompt (the group whose rewards are compared); at least 2. "
            "per_device_train_batch_size * gradient_accumulation_steps must be a multiple of it."
        ),
    )
    grpo_beta: float = field(
        default=0.04,
        metadata=_help(
            "grpo: weight of the KL penalty towards the reference model (the starting weights). "
            "0 = no penalty and no reference model loaded (saves a copy of the weights for full / freeze)."
        ),
    )
    grpo_epsilon: float = field(
        default=0.2, metadata=_help("grpo: clip range of the policy ratio (1 - epsilon, 1 + epsilon).")
    )
    grpo_epochs: int = field(
        default=1,
        metadata=_help(
            "grpo: optimisation passes over each step's completions before sampling new ones "
            "(1 = on-policy, as trl and the paper; more reuses the samples and makes clipping matter)."
        ),
    )
    grpo_scale_rewards: bool = field(
        default=True,
        metadata=_help(
            "grpo: divide each group's centred rewards by the group's standard deviation (the paper's advantage); "
            "false = only subtract the group mean (Dr. GRPO)."
        ),
    )
    reward_funcs: str = field(
        default="exact_match",
        metadata=_help(
            "grpo: comma list of reward functions: exact_match (the dataset's reference answer, normalised), "
            "numeric (the same number), math (equivalent by math-verify), format (answer inside reward_format_tag, "
            "or matching reward_format_regex), length (minus the share of max_new_tokens used), rm (a reward model "
            "from an rm run: reward_model, reward_model_type), or names of functions in reward_file."
        ),
    )
    reward_weights: str | None = field(
        default=None,
        metadata=_help("grpo: comma list of weights, one per reward function, e.g. 1.0,0.2. None: 1 each."),
    )
    reward_file: str | None = field(
        default=None,
        metadata=_help(
            "grpo: a Python file defining your own reward functions `fn(prompts, completions, **kwargs) -> list of "
            "floats`, named in reward_funcs. It runs code: needs trust_reward_file: true."
        ),
    )
    trust_reward_file: bool = field(
        default=False,
        metadata=_help("grpo: allow running the Python code in reward_file (like trust_remote_code for models)."),
    )
    reward_format_tag: str = field(
        default="answer",
        metadata=_help(
            "grpo: the tag the answer goes in: format rewards <tag>...</tag>, and exact_match / numeric / math "
            "compare the text inside it when the completion has one."
        ),
    )
    reward_format_regex: str | None = field(
        default=None,
        metadata=_help("grpo: format rewards completions this regular expression matches in full (replaces the tag)."),
    )
    ref_model: str | None = field(
        default=None,
        metadata=_help(
            "dpo / kto / ppo / grpo: reference model path. None: the base model (with adapters off for lora)."
        ),
    )
    ref_model_adapters: str | None = field(
        default=None, metadata=_help("dpo / kto / ppo / grpo: comma list of adapters applied to ref_model.")
    )
    reward_model: str | None = field(
        default=None,
        metadata=_help(
            "ppo (and grpo's rm reward): reward model path (an rm run's output_dir for reward_model_type lora). "
            "Required by ppo."
        ),
    )
    reward_model_adapters: str | None = field(
        default=None, metadata=_help("ppo / grpo: comma list of adapters applied to reward_model (full type).")
    )
    reward_model_type: Literal["lora", "full", "rule"] = field(
        default="lora",
        metadata=_help(
            "ppo / grpo: lora = reward_model is a LoRA rm adapter on the policy's base model; full = a complete "
            "model; rule (ppo) = reward_model names a built-in rule (reference_f1, uppercase) that scores answers "
            "without a model."
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
    health_checks: bool = field(
        default=True,
        metadata=_help(
            "Watch the run and raise alerts (trainer_log.jsonl, job.log, webhook): NaN / Inf loss or grad norm, "
            "divergence, overfitting, ppo reward hacking signs, low disk before a checkpoint, settings that cannot "
            "learn. false = no checks at all."
        ),
    )
    health_stop_on_nan: bool = field(
        default=True,
        metadata=_help(
            "A NaN / Inf loss or gradient norm stops the run at once (failed), after saving the last good step as "
            "checkpoint-N; false = alert and keep training."
        ),
    )
    health_divergence_factor: float = field(
        default=3.0,
        metadata=_help(
            "Divergence alert when the smoothed training loss stays above this multiple of its lowest value for "
            "health_patience logging steps (and at least 0.1 above it)."
        ),
    )
    health_patience: int = field(
        default=3,
        metadata=_help(
            "Logging steps in a row a sign must last before it is an alert (divergence, ppo KL and response length)."
        ),
    )
    health_overfit_evals: int = field(
        default=3,
        metadata=_help("Overfitting alert when eval_loss rises this many evaluations in a row while the loss falls."),
    )
    health_max_kl: float = field(
        default=20.0,
        metadata=_help("ppo: alert when the logged KL to the reference (nats per response) stays above this."),
    )
    metrics_interval: float = field(
        default=5.0,
        metadata=_help(
            "Seconds between samples of the job's CPU, memory and GPU use in metrics.jsonl of the run folder; "
            "0 = no sampling."
        ),
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
