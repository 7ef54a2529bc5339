"""Evaluation: image metrics (MSE, PSNR, SSIM) inside the disk mask."""

from ._metrics import data_range, image_metrics, mse, psnr, ssim, ssim_map

__all__ = ["data_range", "image_metrics", "mse", "psnr", "ssim", "ssim_map"]
