#!/usr/bin/env bash
# The Pi install on the Pi's own platform, without a Pi: `ecg-automl[pi]` for aarch64 and the Python of Raspberry
# Pi OS 13 "Trixie" (Debian 13 arm64, Python 3.13), run under qemu's user-mode emulation, against this host's
# install on the same model and records: every beat's position and p(abnormal) must agree.
#
#   bash docs/check_pi_aarch64.sh MODEL.tflite RECORD [RECORD ...]      # e.g. quickstart-int8.tflite ../shared/data/mitdb/100
#
# Needs: debootstrap, dpkg-deb, curl, xz (Debian: apt-get install debootstrap), root for debootstrap, and this
# project installed for the host side (PYTHON, default python3; e.g. PYTHON=.venv/bin/python). What it downloads (a
# Debian arm64 base with Python 3.13, about 60 MB; qemu-user 10 from Debian 13, 71 MB; the aarch64 wheels) stays in
# WORK (default ~/.cache/ecg-automl/aarch64) for the next run: about 1.3 GB once unpacked. Emulation is slow: about a
# minute per record, mostly the emulated start (on a busy host 131 s for a 30-minute record, 138 s for a 10 s one).
# Timings under emulation say nothing about a Pi; this checks that the install resolves and gives the same answers.
set -euo pipefail

[ $# -ge 2 ] || { sed -n '6p' "$0" | sed 's/^#   //'; exit 2; }
MODEL=$1; shift
PY=${PYTHON:-python3}
WORK=${WORK:-$HOME/.cache/ecg-automl/aarch64}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
ROOT="$WORK/trixie-arm64"
QEMU="$WORK/qemu10/usr/bin/qemu-aarch64"
SITE="$WORK/site-cp313"
REPO=$(cd "$(dirname "$0")/.." && pwd)
# The host side runs predict too: a PYTHON without this project or LiteRT failed only after the downloads.
"$PY" -c "import ai_edge_litert, wfdb; import ecg_automl.tflite.predict" 2>/dev/null || {
  echo "error: $PY cannot import ecg-automl's predict and LiteRT: set PYTHON to the python of an environment with this" \
       "project installed (e.g. PYTHON=.venv/bin/python)" >&2; exit 2; }
for tool in debootstrap dpkg-deb curl xz; do
  command -v "$tool" >/dev/null || { echo "error: $tool is not installed (Debian: apt-get install debootstrap curl xz-utils)" >&2; exit 2; }
done
[ -f "$MODEL" ] || { echo "error: $MODEL: no such model" >&2; exit 2; }
mkdir -p "$WORK"

if [ ! -x "$ROOT/usr/bin/python3.13" ]; then
  echo "== Debian 13 arm64 base with Python 3.13 -> $ROOT"
  rm -rf "$ROOT"
  # --foreign only downloads and unpacks (nothing arm64 runs here); every package it fetched is then unpacked,
  # which is all a program run with qemu's -L needs.
  debootstrap --foreign --arch=arm64 --variant=minbase --include=python3.13,libpython3.13-stdlib trixie "$ROOT" "$MIRROR" >/dev/null
  for deb in "$ROOT"/var/cache/apt/archives/*.deb; do dpkg-deb -x "$deb" "$ROOT"; done
fi
if [ ! -x "$QEMU" ]; then
  # Debian 12's qemu-user-static (7.2) crashes in LiteRT's Interpreter() (SIGSEGV, also with Python 3.11 and no
  # delegate); Debian 13's qemu-user (10.0) runs it. It is statically linked, so it runs on any x86_64 Linux.
  echo "== qemu-user from Debian 13 -> $WORK/qemu10"
  curl -fsS -o "$WORK/Packages.xz" "$MIRROR/dists/trixie/main/binary-amd64/Packages.xz"
  deb=$(xz -dc "$WORK/Packages.xz" | awk '/^Package: qemu-user$/{p=1} p && /^Filename:/{f=$2; p=0} END{print f}')
  curl -fsS -o "$WORK/qemu-user.deb" "$MIRROR/$deb"
  rm -rf "$WORK/qemu10" && dpkg-deb -x "$WORK/qemu-user.deb" "$WORK/qemu10"
fi

echo "== ecg-automl[pi] for aarch64, CPython 3.13 -> $SITE"
rm -rf "$WORK/dist" "$SITE"
# run CMD..., its stderr kept in $WORK/step.log and shown (less pip's index notices) only if it fails
logged() { "$@" 2> "$WORK/step.log" || { grep -v "is ignored" "$WORK/step.log" >&2; echo "error: failed: $*" >&2; exit 1; }; }
logged "$PY" -m pip wheel -q --no-deps -w "$WORK/dist" "$REPO"
rm -rf "$REPO/build"
platforms=()
for glibc in 2_17 2_24 2_27 2_28 2_31 2_34 2_35 2_36 2_38 2_39 2_41; do platforms+=(--platform "manylinux_${glibc}_aarch64"); done
logged "$PY" -m pip install -q --target "$SITE" "${platforms[@]}" --platform manylinux2014_aarch64 --python-version 3.13 \
  --implementation cp --abi cp313 --only-binary=:all: "$(ls "$WORK"/dist/ecg_automl-*.whl)[pi]"
arm() { PYTHONPATH="$SITE" "$QEMU" -L "$ROOT" "$ROOT/usr/bin/python3.13" "$@"; }
echo "emulated: $(arm -m ecg_automl --version)"
echo "host:     $("$PY" -m ecg_automl --version)"

status=0
for record in "$@"; do
  logged "$PY" -m ecg_automl predict "$MODEL" --record "$record" --json > "$WORK/host.json"
  start=$(date +%s)
  logged arm -m ecg_automl predict "$MODEL" --record "$record" --json > "$WORK/arm.json"
  seconds=$(( $(date +%s) - start ))
  "$PY" - "$WORK/host.json" "$WORK/arm.json" "$record" "$seconds" <<'EOF' || status=1
import json, sys
host, arm = (json.load(open(p))["beats"] for p in sys.argv[1:3])
same_beats = [b["sample"] for b in host] == [b["sample"] for b in arm]
dp = max((abs(h["p_abnormal"] - a["p_abnormal"]) for h, a in zip(host, arm)), default=0.0)
flips = sum(h["abnormal"] != a["abnormal"] for h, a in zip(host, arm))
print(f"{sys.argv[3]}: {len(arm)} beats emulated, {len(host)} on this host, same positions: {same_beats}, "
      f"max |dp| {dp:.3g}, decisions that differ {flips} ({sys.argv[4]} s emulated)")
sys.exit(0 if same_beats and flips == 0 else 1)
EOF
done
exit $status
