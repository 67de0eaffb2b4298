"""Evaluation metrics of the SRVP protocol, one module each.

`lpips` (LPIPS v0.1 AlexNet without torchvision), `i3d` (the Kinetics-400 I3D and FVD features) and `fvd`
(Fréchet distances). PSNR and SSIM per frame (`srvp.common.frame_metrics`) and the mean with its 95% CI
(`srvp.common.stats`) live in the shared layer: the control loop uses them too.
Nothing is re-exported here, so importing one metric does not load the others' dependencies.
"""
