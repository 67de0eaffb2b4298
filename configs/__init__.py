"""Hydra configuration tree of srvp, shipped as a package so `pkg://configs` resolves when installed."""
