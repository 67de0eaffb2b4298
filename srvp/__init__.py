"""srvp: Stochastic Latent Residual Video Prediction (Franceschi, Delasalles et al., ICML 2020) as a world model.

One import namespace: `srvp.worldmodel` (the model), `srvp.video_pred` (the four benchmarks), `srvp.envs`
(pixel environments), `srvp.agents` (planning, replay, control loop), `srvp.common` (what every entry point
shares) and `srvp.configs` (hydra). The common case: `from srvp import SRVP, SRVPConfig, load_model`.
"""

from pathlib import Path

__version__ = "0.2.0"

# In a source checkout the subpackages sit at the repository's top level, beside this folder (the product's
# layout); an installed wheel holds them inside it. Searching the checkout's root for `srvp.<name>` makes both
# import the same names, with or without installation (e.g. a GPU machine running the checkout's python3).
_checkout_root = Path(__file__).resolve().parent.parent
if not (Path(__file__).resolve().parent / "worldmodel").is_dir() and (_checkout_root / "worldmodel").is_dir():
    __path__.append(str(_checkout_root))

from srvp.worldmodel import SRVP, SRVPConfig, load_model  # noqa: E402

__all__ = ["SRVP", "SRVPConfig", "load_model", "__version__"]
