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


class TestU2Net:
    """The seed's lightweight U²-Nets: sizes, outputs, depthwise variant, registry."""

    @pytest.mark.parametrize("size", ["m", "s", "xs"])
    def test_parameter_count_within_ten_percent_of_the_seed(self, size):
        from segmentation.models.u2net import SEED_PARAMETERS, u2net

        params = count_parameters(u2net(size))
        assert abs(params / SEED_PARAMETERS[size] - 1) < 0.10, params

    @pytest.mark.parametrize("size", ["m", "s", "xs"])
    def test_depthwise_variant_is_smaller(self, size):
        from segmentation.models.u2net import u2net

        assert count_parameters(u2net(size, depthwise=True)) < count_parameters(u2net(size))

    def test_depthwise_keeps_each_blocks_first_and_the_fusing_convolution_full(self):
        from torch import nn

        from segmentation.models.u2net import RSU, u2net

        model = u2net("xs", depthwise=True)
        blocks = [m for m in model.modules() if isinstance(m, RSU)]
        assert len(blocks) == 11  # six encoder stages, five decoder stages
        for block in blocks:
            assert isinstance(block.conv_in.conv, nn.Conv2d) and block.conv_in.conv.groups == 1
            for layer in [*block.enc, block.bottom, *block.dec]:
                depthwise, pointwise = layer.conv
                assert depthwise.groups == depthwise.in_channels and depthwise.kernel_size == (3, 3)
                assert pointwise.kernel_size == (1, 1)
        assert model.fuse.kernel_size == (1, 1) and model.fuse.groups == 1

    def test_training_mode_returns_fused_and_side_outputs_at_their_depths(self):
        from segmentation.models.u2net import u2net

        model = u2net("xs").train()
        fused, sides = model(torch.rand(2, 3, 64, 96))
        assert fused.shape == (2, 1, 64, 96)
        assert [tuple(s.shape[2:]) for s in sides] == [(64 // 2**i, 96 // 2**i) for i in range(6)]

    def test_eval_mode_returns_one_logit_per_pixel(self):
        from segmentation.models.u2net import u2net

        with torch.no_grad():
            out = u2net("xs", depthwise=True).eval()(torch.rand(1, 3, 96, 64))
        assert out.shape == (1, 1, 96, 64) and torch.isfinite(out).all()

    def test_odd_multiples_of_32_work(self):
        # 96 = 3 × 32: pooling below 1/32 rounds up and upsampling goes back to the skip size
        from segmentation.models.u2net import u2net

        with torch.no_grad():
            assert u2net("xs").eval()(torch.rand(1, 3, 96, 160)).shape == (1, 1, 96, 160)

    def test_macs_are_counted_and_scale_with_pixels(self):
        from segmentation.models.u2net import count_macs, u2net

        model = u2net("xs")
        small, large = count_macs(model, (64, 64)), count_macs(model, (128, 128))
        assert 3.9 < large / small < 4.1
        assert model.training  # counting does not leave the model in eval mode

    def test_summary_lists_every_variant(self):
        from segmentation.models.u2net import summary

        rows = summary((64, 64), print_fn=lambda _line: None)
        assert [r["arch"] for r in rows] == [
            "u2net-m",
            "u2net-m-dw",
            "u2net-s",
            "u2net-s-dw",
            "u2net-xs",
            "u2net-xs-dw",
            "m2unet",
        ]

    def test_registry_builds_every_architecture_by_name(self):
        from segmentation.models import ARCHS, arch_of, build

        for arch in ARCHS:
            assert arch_of(build(arch)) == arch
        with pytest.raises(ValueError, match="unknown architecture"):
            build("u2net-xl")


class TestEnsemble:
    def test_mean_probability_as_a_logit(self):
        from torch import nn

        from segmentation.models.ensemble import Ensemble

        class Constant(nn.Module):
            def __init__(self, logit: float):
                super().__init__()
                self.logit = logit

            def forward(self, x):
                return torch.full_like(x[:, :1], self.logit)

        out = Ensemble([Constant(0.0), Constant(100.0)]).eval()(torch.zeros(1, 3, 4, 4))
        # probabilities 0.5 and 1.0 average to 0.75: logit ln 3
        assert torch.allclose(out, torch.full((1, 1, 4, 4), float(torch.log(torch.tensor(3.0)))))

    @pytest.mark.parametrize("logit", [-300.0, -40.0, 25.0, 90.0])
    def test_agreeing_sure_members_keep_their_logit(self, logit):
        """Where every member is sure, the float32 probability is 0 or 1: the ensemble must
        still return the members' logit (a probability-space mean returned ±16 or noise)."""
        from torch import nn

        from segmentation.models.ensemble import Ensemble

        class Constant(nn.Module):
            def forward(self, x):
                return torch.full_like(x[:, :1], logit)

        out = Ensemble([Constant(), Constant(), Constant()]).eval()(torch.zeros(1, 3, 2, 2))
        assert torch.allclose(out, torch.full_like(out, logit), rtol=1e-6, atol=1e-5)

    def test_needs_two_members_and_is_for_inference(self):
        from segmentation.models.ensemble import Ensemble
        from segmentation.models.u2net import u2net

        with pytest.raises(ValueError):
            Ensemble([u2net("xs")])
        with pytest.raises(RuntimeError):
            Ensemble([u2net("xs"), u2net("xs")]).train()(torch.rand(1, 3, 32, 32))
