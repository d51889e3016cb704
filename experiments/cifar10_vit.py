"""A small ViT for 32x32 images (`vit_cifar`: 4x4 patches -> 64 tokens + class token, width 192,
7 pre-norm blocks with 3 heads, MLP 384; 2.1M parameters) on CIFAR-10.

    jaxvision prepare cifar10                                # once, needs network
    jaxvision train --config=cifar10_vit                     # 200 epochs
    jaxvision train --config=cifar10_vit:smoke               # 2 steps, offline, for tests

Transformers this small have no convolutional prior and overfit CIFAR-10 without heavy
augmentation, so the recipe follows the compact-transformer ones (Hassani et al. 2021, "Escaping
the big data paradigm with compact transformers"): AdamW (lr 1e-3 at batch 128, decoupled weight
decay 0.05 on kernels), 10 warm-up epochs then cosine, gradient clipping at 1, label smoothing 0.1,
random crops + flips + RandAugment (2 ops, magnitude 9) + CutMix, bfloat16 compute.

Expected (not measured here: this project's machines have no accelerator or CIFAR-10 download):
Hassani et al. report 91.4% for their ViT-Lite-7/4 (width 256, 300 epochs, AutoAugment, Mixup and
CutMix); expect this narrower net and shorter schedule to land a few points below that.
`features["attention"]` (float32[N, 7, 3, 65, 65]) gives the maps for attention rollout.

The smoke variant runs the same code path for 2 steps on the embedded offline digits, with the
position embedding sized for their 28x28 (7x7 patches); it checks that the recipe trains, not what
it learns.
"""

from jaxvision.training.config import classification_config


def get_config(arg: str | None = None):
    config = classification_config()
    config.name = "cifar10_vit"
    config.model = "vit_cifar"
    config.model_kwargs.image_size = 32
    config.model_kwargs.dropout_rate = 0.0
    # "cudnn" (cuDNN's fused flash attention) on a Colab GPU runtime: it needs mixed_precision's bf16
    # and returns no attention maps; the written-out "explicit" form runs everywhere and is the
    # faster one on CPU. `--config.model_kwargs.attention_implementation=cudnn`.
    config.model_kwargs.attention_implementation = "explicit"
    config.dataset.name = "cifar10"
    config.batch_size = 128
    config.eval_batch_size = 1000
    config.num_epochs = 200
    config.optimizer.name = "adamw"
    config.optimizer.learning_rate = 1e-3
    config.optimizer.weight_decay = 0.05
    config.optimizer.schedule = "cosine"
    config.optimizer.warmup_epochs = 10.0
    config.optimizer.grad_clip_norm = 1.0
    config.augment.random_crop_padding = 4
    config.augment.horizontal_flip = True
    config.augment.randaugment_num_ops = 2
    config.augment.randaugment_magnitude = 9
    config.augment.cutmix_alpha = 1.0
    config.label_smoothing = 0.1
    config.mixed_precision = True
    config.log_every_steps = 100
    config.checkpoint.best_metric = "test_accuracy"
    if arg == "smoke":
        config.dataset.name = "embedded_digits"
        config.model_kwargs.image_size = 28
        config.mixed_precision = False
        config.batch_size = 8
        config.eval_batch_size = 500
        config.num_train_steps = 2
        config.optimizer.warmup_epochs = 0.01
        config.log_every_steps = 1
        config.eval_every_steps = 2
    elif arg:
        raise ValueError(f"unknown variant {arg!r} of cifar10_vit; valid: smoke")
    return config.lock()
