"""The paper's evaluation protocol on any runner: ``run`` (Set5/Set14-style folders at each
scale, PSNR/SSIM on Y with the paper's border shave) and ``report`` (its tables)."""
