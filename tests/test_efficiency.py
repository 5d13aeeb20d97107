"""core.efficiency against hand computations."""

from __future__ import annotations

import pytest

from core.efficiency import device_peak_flops, mfu_percent, train_flops_per_token


def test_full_fine_tuning_is_six_n_plus_attention():
    # A 7B-like model: P = 6.5e9 matmul parameters, 32 layers, hidden 4096, 2048 tokens a sequence.
    p, layers, hidden, seq = 6.5e9, 32, 4096, 2048
    flops = train_flops_per_token(int(p), int(p), layers, hidden, seq)
    assert flops == pytest.approx(6 * p + 12 * layers * hidden * seq)
    assert flops == pytest.approx(3.9e10 + 3.221225472e9)


def test_lora_skips_the_frozen_weight_gradients():
    # 1e9 frozen + 1e7 adapter parameters, 1 layer of width 10 over 100 tokens: 4 * 1.01e9 + 2 * 1e7 + 12000.
    flops = train_flops_per_token(1_010_000_000, 10_000_000, 1, 10, 100)
    assert flops == 4 * 1_010_000_000 + 2 * 10_000_000 + 12 * 1 * 10 * 100


def test_mfu_by_hand():
    # 3000 tokens/s x 4.2e10 FLOPs = 1.26e14 FLOP/s, on 2 devices of 312 TFLOPS: 1.26e14 / 6.24e14 = 20.19 %.
    assert mfu_percent(3000, 4.2e10, 312e12, devices=2) == pytest.approx(20.192, rel=1e-4)
    assert mfu_percent(3000, 4.2e10, None) is None


def test_device_table_prefers_the_specific_name():
    assert device_peak_flops("NVIDIA H100 PCIe", True) == 756e12
    assert device_peak_flops("NVIDIA H100 80GB HBM3", True) == pytest.approx(989.4e12)
    assert device_peak_flops("NVIDIA A100-SXM4-80GB", False) == pytest.approx(19.5e12)
    assert device_peak_flops("NVIDIA L40S", True) == pytest.approx(362.1e12)
    assert device_peak_flops("NVIDIA L4", True) == 121e12
    assert device_peak_flops("NVIDIA A10G", True) is None  # known name, no checked figure: no MFU
    assert device_peak_flops("Some Future GPU", True) is None
