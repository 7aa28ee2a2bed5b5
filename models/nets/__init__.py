"""The re-implemented architectures (PyTorch): DDRNet, M-SFANet/M-SegNet, the anomaly predictors, VQ-VAE-2, HNeRV."""
