from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from segmentation.models.m2unet import count_parameters, m2unet  # noqa: E402

torch.set_num_threads(1)  # tiny inputs; avoids OpenMP spin stalls on a shared CPU


def test_parameter_count_matches_the_paper():
    # Laibacher et al. report 0.55 M parameters (2.2 MB in float32)
    assert count_parameters(m2unet()) == 549_748


def test_output_is_one_logit_per_pixel():
    model = m2unet().eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 64, 96))
    assert out.shape == (2, 1, 64, 96)
    assert torch.isfinite(out).all()


def test_trunk_taps_strides_and_channels():
    features = m2unet().backbone(torch.rand(1, 3, 64, 64))
    assert [tuple(f.shape[1:]) for f in features] == [
        (3, 64, 64),
        (16, 32, 32),
        (24, 16, 16),
        (32, 8, 8),
        (96, 4, 4),
    ]


def test_pretrained_backbone_is_refused():
    with pytest.raises(ValueError, match="pretrained"):
        m2unet(pretrained_backbone=True)


def test_inference_form_computes_the_same_function_with_fewer_full_resolution_channels():
    from segmentation.models.m2unet import ProjectedDecoderBlock, inference_form

    torch.manual_seed(0)
    model = m2unet()
    for module in model.modules():  # non-trivial batch-norm statistics, as after training
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    model.eval()
    fast = inference_form(model)
    assert all(
        isinstance(getattr(fast.head, f"decode{i}"), ProjectedDecoderBlock) for i in (1, 2, 3, 4)
    )
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        expected, got = model(x), fast(x)
    assert torch.allclose(got, expected, atol=1e-4), (got - expected).abs().max()
    # the last block upsamples 5 projected channels instead of concatenating 33
    assert fast.head.decode1.project_up.out_channels == 5
    assert not isinstance(model.head.decode1, ProjectedDecoderBlock)  # the original is kept
