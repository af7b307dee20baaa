"""The model bundle contract: a folder with manifest.json + ONNX files, and the runner that executes it.

See docs/bundle.md for the contract a hospital's own model must fill.
"""

from libs.bundle.manifest import MANIFEST_FILE, Manifest, load_manifest
from libs.bundle.providers import PREFERRED_PROVIDERS, choose_providers
from libs.bundle.runner import BundleRunner

__all__ = [
    "MANIFEST_FILE",
    "PREFERRED_PROVIDERS",
    "BundleRunner",
    "Manifest",
    "choose_providers",
    "load_manifest",
]
