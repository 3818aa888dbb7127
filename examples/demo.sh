#!/usr/bin/env bash
# `make demo`, or `bash examples/demo.sh` after `pip install -e .`: the main job on the embedded
# default. Each example becomes a real git repository (what reconciler reads is what is
# committed), then: validate, plan, apply to SQLite, show the store, re-run (no changes), commit
# a change, plan it as a PR comment would show it, save that plan and apply exactly it, run a
# flow with a worker. RECONCILER_DEMO_DIR picks where it works (default .reconciler/demo).
set -euo pipefail
command -v reconcile > /dev/null || {
  echo "demo.sh: no \`reconcile\` on the PATH: run \`pip install -e .\` (in a virtualenv) first" >&2
  exit 1
}
here="$(cd "$(dirname "$0")" && pwd)"
work="$(realpath -m "${RECONCILER_DEMO_DIR:-$here/../.reconciler/demo}")"
rm -rf "$work" && mkdir -p "$work"
export RECONCILER_STORE="sqlite:///$work/state.db"
export GIT_AUTHOR_NAME=demo GIT_AUTHOR_EMAIL=demo@reconciler.invalid
export GIT_COMMITTER_NAME=demo GIT_COMMITTER_EMAIL=demo@reconciler.invalid

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
repo() {  # copy an example into its own git repository
  cp -r "$here/$1" "$work/$1"
  git -C "$work/$1" init -q -b main && git -C "$work/$1" add -A
  git -C "$work/$1" commit -qm "import $1"
  echo "$work/$1"
}

data=$(repo 01-data-project)
platform=$(repo 02-platform-pools)

step "reconcile validate: the files alone (no store needed)"
reconcile validate "$data" "$platform"

step "reconcile plan: what would be created (nothing is written)"
reconcile plan "$data" "$platform" > "$work/plan.txt"
sed -n '1,28p' "$work/plan.txt"; echo "  ... (full plan: $work/plan.txt)"; tail -n 1 "$work/plan.txt"
test ! -e "$work/state.db" && echo "(the store still does not exist: a dry-run touches nothing)"

step "reconcile apply -y: apply both repositories to $RECONCILER_STORE (-y: do not ask)"
reconcile apply -y --quiet "$data" "$platform" | tail -n 2

step "reconcile deployment ls / work-pool ls / work-queue ls"
reconcile deployment ls
echo; reconcile work-pool ls
echo; reconcile work-queue ls

step "reconcile plan again: the store matches git"
reconcile plan --detailed-exitcode "$data" "$platform"

step "a pull request: change a parameter, drop a deployment, add a queue"
sed -i 's/days: 30/days: 90/' "$data/prefect.yaml"
python3 - "$platform/teams/finance/prefect.yaml" <<'PY'
import sys
path = sys.argv[1]
text = open(path).read()
open(path, "w").write(text[: text.index("  - name: fx-rates-backfill")])
PY
cat >> "$platform/work-pools.yaml" <<'YAML'
    queues:
      - name: reports
        priority: 7
YAML
git -C "$data" commit -qam "orders-backfill: 90 days"
git -C "$platform" commit -qam "finance: drop the fx backfill; add a reports queue"
reconcile plan --detailed-exitcode "$data" "$platform" || test $? -eq 2

step "the same plan as a Markdown PR comment"
reconcile plan -o markdown "$data" "$platform"

step "save the plan, then apply exactly it (refused if the store or a commit moved since)"
reconcile plan -q -out "$work/reviewed.plan" "$data" "$platform"
reconcile apply "$work/reviewed.plan" < /dev/null | tail -n 1
reconcile history

step "a worker runs a flow: reconcile deployment run, then reconcile worker start --run-once"
reconcile deployment run ingest-orders/orders-nightly --param days=2
(cd "$work" && reconcile worker start --pool etl --run-once --no-schedule 2>&1 | sed 's/^/  worker: /')
run_id=$(reconcile flow-run ls --deployment ingest-orders/orders-nightly -o json |
  python3 -c 'import json, sys; print(next(r["id"] for r in json.load(sys.stdin) if r["schedule_id"] is None))')
reconcile flow-run ls --deployment ingest-orders/orders-nightly --state COMPLETED
echo; echo "its logs:"; reconcile flow-run logs "$run_id"
test "$(reconcile flow-run inspect "$run_id" | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')" = COMPLETED

step "the daemon: reconcile status (none has run against this store yet)"
reconcile status
