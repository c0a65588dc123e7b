"""Defaults shared by the CLI and the packages, importable without any heavy dependency."""

#: Optuna study storage when --storage is not given: a local SQLite file.
DEFAULT_STORAGE = "sqlite:///runs/optuna.db"
