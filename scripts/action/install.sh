#!/usr/bin/env bash
# The action's install step: nothing when a zdm of the wanted version is already on PATH (a
# cached one), else the released wheel from PyPI (ZDM_VERSION), else a build of the action's
# own source with cargo.
set -euo pipefail
want="${ZDM_VERSION:-}"
if command -v zdm >/dev/null 2>&1; then
    have="$(zdm --version | awk '{print $2}')"
    if [ -z "$want" ] || [ "$have" = "$want" ]; then
        echo "zdm $have is installed"
        exit 0
    fi
fi
if [ -n "$want" ]; then
    python3 -m pip install --user "zdm-postgres==$want"
    echo "$(python3 -m site --user-base)/bin" >> "${GITHUB_PATH:-/dev/null}"
else
    cargo install --locked --path "$ACTION_PATH"
fi
