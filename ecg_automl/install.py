"""How to install an extra of ecg-automl, which is not on PyPI: ``pip install "ecg-automl[search]"`` finds no
distribution, so every hint names the install from a checkout (or a copy of it, or a wheel)."""

from __future__ import annotations


def install_hint(extra: str, package: str | None = None) -> str:
    """One line: the pip command that adds ``extra`` from the ecg-automl checkout, the one for a folder or wheel
    elsewhere, and ``package`` (the plain package the extra brings) where installing it alone will do."""
    alone = f"; or just pip install {package}" if package else ""
    return (f'pip install -e ".[{extra}]" in the ecg-automl checkout (or pip install "PATH[{extra}]", PATH its '
            f"folder or .whl{alone})")
