#!/usr/bin/env bash
# The action's lint step: annotations on the pull request's lines (`::error file=…`). Exit 1 on
# an error-level finding unless FAIL_ON_FINDINGS is not "true"; usage errors (2) always fail.
set -uo pipefail
read -r -a paths <<< "${ZDM_PATHS:-migrations}"
zdm lint --format github "${paths[@]}"
code=$?
if [ "$code" -eq 1 ] && [ "${FAIL_ON_FINDINGS:-true}" != "true" ]; then
    echo "zdm lint found errors; fail-on-findings is off"
    exit 0
fi
exit "$code"
