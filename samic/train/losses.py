"""Training objectives: rate, distortion (MSE, LPIPS) and the hinge GAN with a
HiFiC-style conditional PatchGAN discriminator."""
from __future__ import annotations


import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import spectral_norm


def bits_per_pixel(likelihoods: dict[str, torch.Tensor], num_pixels: int) -> torch.Tensor:
    """Per-sample rate (B,) in bits per pixel from the entropy models' likelihoods."""
    return sum(-torch.log2(lik).flatten(1).sum(1) for lik in likelihoods.values()) / num_pixels


def per_sample_mse(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return (x_hat - x).pow(2).flatten(1).mean(1)


def psnr_from_mse(mse: torch.Tensor) -> torch.Tensor:
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-10))


class ConditionalPatchDiscriminator(nn.Module):
    """HiFiC's conditional PatchGAN: image patches judged together with the (upsampled)
    quantized latent y_hat they were decoded from. Spectral norm on every conv.

    x (B, 3, H, W), y_hat (B, M, H/16, W/16) -> logits (B, 1, H/16, W/16)-ish patch map.
    """

    def __init__(self, latent_channels: int, width: int = 64, cond_channels: int = 12):
        super().__init__()
        self.cond = nn.Sequential(spectral_norm(nn.Conv2d(latent_channels, cond_channels, 3, padding=1)),
                                  nn.LeakyReLU(0.2))
        chans = [3 + cond_channels, width, 2 * width, 4 * width, 8 * width]
        layers = []
        for i in range(4):
            stride = 2 if i < 3 else 1
            layers += [spectral_norm(nn.Conv2d(chans[i], chans[i + 1], 4, stride, padding=1 if stride == 2 else 2)),
                       nn.LeakyReLU(0.2)]
        layers.append(spectral_norm(nn.Conv2d(chans[-1], 1, 1)))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, y_hat: torch.Tensor) -> torch.Tensor:
        cond = F.interpolate(self.cond(y_hat), size=x.shape[-2:], mode="nearest")
        return self.net(torch.cat([x, cond], 1))


def hinge_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def hinge_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """The generator's adversarial term uses the discriminator's output on x_hat."""
    return -fake_logits.mean()


def lambda_weighted_mse(mse: torch.Tensor, lmbda: torch.Tensor) -> torch.Tensor:
    """lambda * 255^2 * MSE, the CompressAI convention for images in [0, 1] (per sample)."""
    return lmbda * (255.0 ** 2) * mse


