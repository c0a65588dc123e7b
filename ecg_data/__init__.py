"""Real PhysioNet ECG data as beat windows, with caching and patient-grouped splits."""

from ._paths import cache_dir, data_root, database_dir, fetch_database
from ._wfdb_io import Header, Record, read_annotations, read_header, read_record
from .cache import PIPELINE_VERSION, CacheEntry, cache_entries, remove_cache_entries, stray_cache_files
from .dataset import BeatDataset
from .errors import DatabaseNotFoundError, DataError, RecordError
from .heartbeat_csv import read_heartbeat_csv
from .loader import FS_RANGE, SOURCES, WINDOW_RANGE, data_layout, describe_layout, load_dataset, register_source
from .mitdb import AAMI, ABNORMAL, DS1, DS2, SUBJECTS, read_mitdb
from .preprocess import HIGH_CUT, LOW_CUT, N_RR_FEATURES, bandpass, beats_from_signal, normalise, resample, rr_features
from .ptbdb import read_ptbdb
from .ptbxl import read_ptbxl
from .splits import PatientLeakError, check_no_leak, grouped_splits, patient_kfold, subsample_beats

register_source("mitdb", read_mitdb)
register_source("ptbdb", read_ptbdb)
register_source("ptbxl", read_ptbxl)
register_source("heartbeat-csv", read_heartbeat_csv)

__all__ = [
    "AAMI", "ABNORMAL", "bandpass", "BeatDataset", "beats_from_signal", "cache_dir", "cache_entries", "CacheEntry",
    "check_no_leak", "data_layout",
    "data_root", "database_dir", "DatabaseNotFoundError", "DataError", "describe_layout", "DS1", "DS2",
    "fetch_database", "FS_RANGE", "grouped_splits", "Header", "HIGH_CUT", "load_dataset", "LOW_CUT",
    "N_RR_FEATURES", "normalise", "patient_kfold", "PatientLeakError", "PIPELINE_VERSION", "read_annotations",
    "read_header", "read_heartbeat_csv", "read_mitdb", "read_ptbdb", "read_ptbxl", "read_record", "Record",
    "RecordError", "register_source", "remove_cache_entries", "resample", "rr_features", "SOURCES", "stray_cache_files",
    "SUBJECTS", "subsample_beats",
    "WINDOW_RANGE",
]
