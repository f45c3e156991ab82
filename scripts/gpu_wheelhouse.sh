#!/usr/bin/env bash
# The wheels bench/gpu.py needs on the lent GPU machine, downloaded here into wheelhouse/ (ignored
# by git) so one device call can carry them: that machine has Python 3.12 with torch, transformers,
# accelerate, safetensors, Pillow, numpy, huggingface_hub, requests, regex, filelock, zipp, click,
# PyYAML, python-dateutil and attrs, but no network, no diffusers and no Django.
#
# bench/gpu.py runs django.setup() on config.settings, as a worker does, so besides diffusers this
# is every package INSTALLED_APPS and the Celery app import. Each is pinned from constraints.txt
# and downloaded alone (--no-deps): the list is the whole contract, and wheelhouse/requirements.txt
# records it. Only wheels for CPython 3.12 on x86-64 Linux (or pure Python) are taken.
#
#   scripts/gpu_wheelhouse.sh            # build wheelhouse/
#   scripts/gpu_wheelhouse.sh --check    # build, then install it into a Python 3.12 venv that has
#                                        # only the GPU machine's packages, and django.setup() there
set -euo pipefail
cd "$(dirname "$0")/.."

DEST=wheelhouse
PYTHON=${PYTHON:-python3}
PACKAGES=(
  diffusers importlib_metadata lazy-importer                            # the pipeline
  Django asgiref sqlparse dj-database-url                               # config.settings
  djangorestframework drf-spectacular drf-spectacular-sidecar           # INSTALLED_APPS ...
  jsonschema jsonschema-specifications referencing rpds-py uritemplate inflection
  django-allauth django-htmx django-template-partials
  celery kombu billiard vine amqp click-didyoumean click-repl click-plugins prompt_toolkit wcwidth tzlocal  # config/celery.py
  python-dateutil click             # there already, but celery wants python-dateutil==2.9.0.post0 and click>=8.3.1
)

pins=()
for name in "${PACKAGES[@]}"; do
  # PyPI treats -, _ and . alike and ignores case; constraints.txt spells names either way.
  pattern="^$(sed 's/[-_.]/[-_.]/g' <<<"$name")=="
  pin=$(grep -i -E "$pattern" constraints.txt) || { echo "no pin for $name in constraints.txt" >&2; exit 1; }
  pins+=("$pin")
done

rm -rf "$DEST"
mkdir -p "$DEST"
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform any -d "$DEST" "${pins[@]}"
printf '%s\n' "${pins[@]}" >"$DEST/requirements.txt"
ls "$DEST"
echo "wheelhouse: $(ls "$DEST"/*.whl | wc -l) wheels, $(du -sh "$DEST" | cut -f1)"

[ "${1:-}" = "--check" ] || exit 0

# The check: a Python 3.12 venv holding the GPU machine's own versions of what the wheels depend
# on (as its pip list reads; torch itself is left out, there is no CPU build of it for 3.12 here),
# then the wheelhouse installed WITH dependency resolution and --no-index: a dependency that is in
# neither fails here, not on the device.
for candidate in "${PY312:-}" python3.12 "$HOME"/.pyenv/versions/3.12*/bin/python3.12; do
  PY312=$candidate
  "$PY312" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null && break
  PY312=
done
[ -n "$PY312" ] || { echo "--check needs a Python 3.12 (set PY312)" >&2; exit 1; }
venv=$(mktemp -d)/device-like
trap 'rm -rf "$(dirname "$venv")"' EXIT
"$PY312" -m venv "$venv"
"$venv/bin/pip" install --quiet --only-binary=:all: huggingface_hub==1.33.0 numpy==2.5.2 safetensors==0.8.0 \
  tokenizers==0.23.2 pillow requests regex filelock zipp click pyyaml python-dateutil attrs typing-extensions \
  packaging tqdm typer six psutil
"$venv/bin/pip" install --quiet --no-deps transformers==5.17.0 accelerate==1.15.0  # their torch is not here
"$venv/bin/pip" install --quiet --no-index --find-links "$DEST" -r "$DEST/requirements.txt"
broken=$("$venv/bin/pip" check | grep -v -E "requires torch|^No broken" || true)
[ -z "$broken" ] || { echo "$broken" >&2; exit 1; }
DJANGO_SETTINGS_MODULE=config.settings "$venv/bin/python" -c '
import django, diffusers
django.setup()
from generation.models import ORIENTATIONS
print("django.setup() and diffusers", diffusers.__version__, "import on Python 3.12 with the wheelhouse:", ORIENTATIONS)'
