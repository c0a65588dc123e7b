"""Real PhysioNet ECG data as beat windows, with caching and patient-grouped splits."""

from ._paths import cache_dir, data_root, database_dir, fetch_database
from .dataset import BeatDataset
from .errors import DatabaseNotFoundError, DataError, RecordError
from .heartbeat_csv import read_heartbeat_csv
from .loader import FS_RANGE, SOURCES, WINDOW_RANGE, data_layout, describe_layout, load_dataset, register_source
from .mitdb import DS1, DS2, read_mitdb
from .preprocess import N_RR_FEATURES, bandpass, beats_from_signal, normalise, resample, rr_features
from .ptbdb import read_ptbdb
from .ptbxl import read_ptbxl
from .splits import PatientLeakError, check_no_leak, grouped_splits, patient_kfold, subsample_beats

register_source("mitdb", read_mitdb)
register_source("ptbdb", read_ptbdb)
register_source("ptbxl", read_ptbxl)
register_source("heartbeat-csv", read_heartbeat_csv)

__all__ = [
    "BeatDataset", "DS1", "DS2", "DataError", "DatabaseNotFoundError", "FS_RANGE", "N_RR_FEATURES", "PatientLeakError",
    "RecordError", "SOURCES", "bandpass", "beats_from_signal", "cache_dir", "check_no_leak", "data_layout", "data_root",
    "database_dir", "describe_layout", "fetch_database", "grouped_splits", "load_dataset", "normalise", "patient_kfold",
    "read_heartbeat_csv", "read_mitdb", "read_ptbdb", "read_ptbxl", "register_source", "resample", "rr_features",
    "WINDOW_RANGE", "subsample_beats",
]
