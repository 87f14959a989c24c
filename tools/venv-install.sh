#!/bin/sh
# Install the project, editable, with the extras given, into a venv: what `make` runs.
#
#     tools/venv-install.sh .venv '.[test,torch]'
#
# uv (from PyPI, into the venv) fetches and unpacks the ~200 packages in parallel: about
# 25 s on two cores where pip takes 85-140 s. It is given pip's own find-links and index,
# so it takes the same files pip would (the CPU build of torch where a machine carries
# one, instead of a multi-GB CUDA build). If uv cannot do it, pip does.
set -eu
venv=$1
spec=$2
py=$venv/bin/python

pip_setting() {  # an environment variable, else pip's configuration file
    eval "value=\${$1:-}"
    [ -n "$value" ] || value=$("$py" -m pip config get "global.$2" 2>/dev/null || true)
    printf '%s' "$value"
}

if "$py" -m pip install --quiet uv; then
    set --
    for link in $(pip_setting PIP_FIND_LINKS find-links); do set -- "$@" --find-links "$link"; done
    index=$(pip_setting PIP_INDEX_URL index-url)
    [ -z "$index" ] || set -- "$@" --index-url "$index"
    if "$venv/bin/uv" pip install --quiet --python "$py" "$@" -e "$spec"; then
        exit 0
    fi
    echo "uv could not install the project; installing it with pip" >&2
fi
exec "$py" -m pip install --quiet --no-compile -e "$spec"
