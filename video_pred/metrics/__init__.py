"""Evaluation metrics of the SRVP protocol, one module each.

`lpips` (LPIPS v0.1 AlexNet without torchvision), `i3d` (the Kinetics-400 I3D and FVD features), `fvd`
(Fréchet distances) and `stats` (mean and 95% CI). PSNR and SSIM per frame live in `srvp.common.frame_metrics`,
since the control loop scores its open-loop predictions with them too.
Nothing is re-exported here, so importing one metric does not load the others' dependencies.
"""
