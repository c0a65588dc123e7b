"""``predict --plot``: the picture of a record's beats over time, and its refusal without matplotlib."""

from __future__ import annotations

import struct

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from ecg_automl.tflite import plot as plot_mod  # noqa: E402
from ecg_automl.tflite import predict as predict_mod  # noqa: E402
from ecg_automl.tflite.predict import Prediction  # noqa: E402


def _prediction(minutes: float, fs: float = 360.0, reference: bool = True, gaps=((600, 660),)) -> Prediction:
    """A record's prediction as predict_record returns it: a beat a second, every 5th above the threshold, every
    4th annotated abnormal, and lead-off gaps (seconds) with no beat inside."""
    n = int(minutes * 60)
    t = np.arange(n, dtype=np.float64) + 0.5
    runs = np.array(gaps, dtype=np.float64).reshape(-1, 2)
    inside = np.zeros(n, dtype=bool)
    for a, b in runs:
        inside |= (t >= a) & (t < b)
    t = t[~inside]
    prob = np.where(np.arange(len(t)) % 5 == 0, 0.9, 0.1).astype(np.float32)
    ref = (np.arange(len(t)) % 4 == 0) if reference else None
    pred = Prediction("mitdb/x", (t * fs).astype(np.int64), prob, 0.5, ref, fs=fs, n_samples=int(n * fs),
                      gaps=(runs * fs).astype(np.int64))
    pred.summary = predict_mod._summary(pred)
    pred.summary["beat_source"] = "annotations (atr)" if reference else "XQRS detector"
    return pred


def _png_size(path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk, after checking the signature."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def test_a_short_record_plot_has_probability_and_burden_panels_gaps_and_the_annotations(tmp_path):
    """Two panels on one time axis (min:s for a 30-minute record): p(abnormal) per beat with the threshold line
    and the annotated abnormal beats marked as flagged or missed above them, and the abnormal burden per 30 s
    (the model's bars, the annotations' line); the gap is shaded in both."""
    pred = _prediction(30)
    fig = plot_mod.prediction_figure(pred)
    top, bottom = fig.axes
    assert len(fig.axes) == 2
    assert top.get_ylabel() == "p(abnormal)" and "per 30 s" in bottom.get_ylabel()
    assert bottom.get_xlabel() == "time (min:s)"
    assert bottom.xaxis.get_major_formatter()(125.0, 0) == "2:05"
    assert any(np.allclose(line.get_ydata(), 0.5) for line in top.get_lines())  # the threshold
    labels = top.get_legend_handles_labels()[1]
    assert any(lab.startswith("annotated abnormal, flagged") for lab in labels)
    assert any(lab.startswith("annotated abnormal, missed") for lab in labels)
    assert "lead-off gap" in labels
    shaded = [p for ax in (top, bottom) for p in ax.patches
              if p.get_x() == pytest.approx(600.0) and p.get_width() == pytest.approx(60.0)]
    assert len(shaded) == 2  # one span in each panel
    bars = bottom.containers[0]
    assert len(bars) == 60 and all(p.get_width() == pytest.approx(30.0) for p in bars)
    assert bars[0].get_height() == pytest.approx(100 * 6 / 30)  # 6 of the first 30 beats are flagged
    assert np.isnan(bars[20].get_height())  # 600-630 s: inside the gap, no beat, no bar (it was a 0 % bar)
    rows = {lab.split(" (")[0]: set(np.round(line.get_ydata(), 2)) for line, lab in zip(*top.get_legend_handles_labels())
            if lab.startswith("annotated")}
    assert rows == {"annotated abnormal, flagged": {1.06}, "annotated abnormal, missed": {1.12}}  # a row each
    out = plot_mod.save_prediction_plot(pred, tmp_path / "sub" / "x.png")
    assert out == tmp_path / "sub" / "x.png"
    w, h = _png_size(out)
    assert w > 1000 and h > 600
    assert [p.name for p in out.parent.iterdir()] == ["x.png"]  # the temporary file was renamed, not left


def test_a_window_a_gap_cuts_short_is_drawn_faint_and_a_record_with_nothing_flagged_says_so():
    """A window holding a few seconds of signal beside a lead-off gap showed a spike (19 % against 12 % around it in
    the helper's 8-hour record): its bar is now faint and hatched, in a legend entry of its own."""
    pred = _prediction(30, gaps=((600, 625),))  # the 600-630 s window keeps 5 of its 30 beats
    bottom = plot_mod.prediction_figure(pred).axes[1]
    handles, labels = bottom.get_legend_handles_labels()
    faint = handles[labels.index("window with under a quarter of the usual beats")]
    assert [p.get_x() for p in faint] == [600.0] and len(bottom.containers[0]) == 59
    short_end = _prediction(30.1, gaps=())  # a last window of 6 s, as every MIT-BIH record (1,805.6 s) has: not faint
    assert "window with under a quarter of the usual beats" not in plot_mod.prediction_figure(
        short_end).axes[1].get_legend_handles_labels()[1]
    quiet = _prediction(30)
    quiet.prob[:] = 0.1
    texts = [t.get_text() for t in plot_mod.prediction_figure(quiet).axes[1].texts]
    assert texts == ["no beat flagged abnormal"]


def test_the_plot_carries_the_printed_warnings_and_a_10_s_record_reads_in_seconds():
    """The picture left out what the report warned of (a record whose patient the model trained on, another lead
    read); a 10 s PTB-XL record was titled "0.2 min", had ticks at 0:00 and 0:10 only and one 30 s burden bar."""
    pred = _prediction(10 / 60, gaps=())
    pred.summary["seen_in_training"] = "a record named x is one of the 22 mitdb records whose patients ..."
    pred.summary["quality_warnings"] = ["neighbouring beats hardly look alike"]
    fig = plot_mod.prediction_figure(pred)
    top, bottom = fig.axes
    notes = [t.get_text() for t in fig.texts if t.get_text().startswith("WARNING")]  # the suptitle is one too
    assert len(notes) == 1 and notes[0].startswith("WARNING: a record named x is one of the 22 mitdb records")
    assert "WARNING: signal: neighbouring beats hardly look alike" in notes[0]
    assert fig._suptitle.get_text().startswith("x: 10 s, 10 beats")
    ticks = [t for t in bottom.get_xticks() if 0 <= t <= 10]
    assert len(ticks) >= 5 and "per 5 s" in bottom.get_ylabel()
    assert not [t for t in plot_mod.prediction_figure(_prediction(30)).texts if "WARNING" in t.get_text()]


def test_a_holter_plot_reads_in_hours_and_minutes_with_5_minute_burden(tmp_path):
    """A 4-hour record: h:mm ticks and the burden per 5 min; without annotations no reference is drawn."""
    pred = _prediction(240, fs=128.0, reference=False, gaps=((3600, 3900), (9000, 9002)))
    fig = plot_mod.prediction_figure(pred)
    top, bottom = fig.axes
    assert bottom.get_xlabel() == "time (h:mm)" and "per 5 min" in bottom.get_ylabel()
    assert bottom.xaxis.get_major_formatter()(3900.0, 0) == "1:05"
    assert not any("annotated" in lab for lab in top.get_legend_handles_labels()[1])
    bars = bottom.containers[0]
    assert len(bars) == 48 and all(p.get_width() == pytest.approx(300.0) for p in bars)
    spans = sorted((p.get_x(), p.get_width()) for p in top.patches)
    assert spans == [(3600.0, 300.0), (9000.0, 18.0)]  # a 2 s gap is drawn 1/800 of the record wide, to be seen
    assert _png_size(plot_mod.save_prediction_plot(pred, tmp_path / "h.png"))[0] > 1000


def test_predict_plot_on_the_command_line_writes_the_png(tmp_path, monkeypatch, capsys):
    """`predict --plot FILE.png` prints the prediction as before and writes the picture."""
    from ecg_automl.cli import main

    monkeypatch.setattr(predict_mod, "predict_record", lambda *a, **kw: _prediction(30))
    assert main(["predict", "m.tflite", "--record", "mitdb/x", "--plot", str(tmp_path / "p.png")]) == 0
    out = capsys.readouterr().out
    assert "at threshold 0.500" in out and f"plot written to {tmp_path / 'p.png'}" in out
    _png_size(tmp_path / "p.png")


@pytest.mark.parametrize("args,needle", [(["--csv", "b.csv", "--plot", "p.png"], "it needs --record"),
                                         (["--record", "r", "--plot", "p.jpg"], "name a .png, .svg, .pdf file")])
def test_a_plot_that_cannot_be_drawn_is_refused_before_predicting(tmp_path, monkeypatch, capsys, args, needle):
    """--plot with CSV rows (no times) or a file type it does not write: one line, exit 2, no prediction run."""
    from ecg_automl.cli import main

    ran = []
    monkeypatch.setattr(predict_mod, "predict_record", lambda *a, **kw: ran.append(1))
    monkeypatch.setattr(predict_mod, "predict_csv", lambda *a, **kw: ran.append(1))
    assert main(["predict", "m.tflite", *args]) == 2
    assert needle in capsys.readouterr().err and not ran


def test_predict_plot_without_matplotlib_names_the_install_before_predicting(tmp_path, cli_env):
    """On the base (Pi) install matplotlib is missing: --plot is one line naming the extra to install, exit 2,
    decided before the model is even opened (the model and record here do not exist)."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['matplotlib'] = None; from ecg_automl.cli import main; "
            "sys.exit(main(['predict', 'missing.tflite', '--record', 'nothere', '--plot', 'p.png']))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=cli_env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --plot needs matplotlib")
    assert 'pip install -e ".[plot]" in the ecg-automl checkout' in lines[0]  # not on PyPI
    assert "or just pip install matplotlib" in lines[0]
    assert not (tmp_path / "p.png").exists()
