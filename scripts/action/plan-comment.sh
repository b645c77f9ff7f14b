#!/usr/bin/env bash
# The action's comment step: `zdm plan --format markdown` (with estimates when a database URL
# is given) as one pull-request comment, updated in place on every push (found by its first
# line), and in the job summary. Outside a pull request it only writes the summary.
set -euo pipefail
read -r -a paths <<< "${ZDM_PATHS:-migrations}"
args=(plan --format markdown)
if [ -n "${ZDM_DATABASE_URL:-}" ]; then
    args+=(--database-url "$ZDM_DATABASE_URL")
fi
marker="<!-- zdm-plan -->"
body="$(mktemp)"
{
    echo "$marker"
    echo "## zdm plan"
    echo
    # A refused migration is in the plan's Refused section; lint is the gate.
    zdm "${args[@]}" "${paths[@]}" || true
} > "$body"
if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then
    cat "$body" >> "$GITHUB_STEP_SUMMARY"
fi
if [ -z "${PR_NUMBER:-}" ]; then
    echo "not a pull request: the plan is in the job summary"
    exit 0
fi
repo="${GITHUB_REPOSITORY:?GITHUB_REPOSITORY is not set}"
existing="$(gh api "repos/$repo/issues/$PR_NUMBER/comments" --paginate \
    --jq ".[] | select(.body | startswith(\"$marker\")) | .id" | head -n 1)"
if [ -n "$existing" ]; then
    gh api -X PATCH "repos/$repo/issues/comments/$existing" -F "body=@$body" > /dev/null
    echo "updated the plan comment $existing"
else
    gh api -X POST "repos/$repo/issues/$PR_NUMBER/comments" -F "body=@$body" > /dev/null
    echo "posted the plan comment"
fi
