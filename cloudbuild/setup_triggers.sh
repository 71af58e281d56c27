#!/usr/bin/env bash
# Creates the Cloud Build triggers of cloudbuild/triggers/ in a project, and for the new-data trigger the Pub/Sub
# topic and the Cloud Storage notification that feed it. Safe to run again: existing triggers are updated
# (`gcloud builds triggers import`), an existing topic is kept, a notification is added only if none targets the
# topic yet.
#
# Usage: cloudbuild/setup_triggers.sh [--dry-run] [TRIGGER...]    (default: every file in cloudbuild/triggers/)
# Environment (placeholders @NAME@ in the trigger files):
#   PROJECT_ID, GITHUB_OWNER, GITHUB_REPO          required
#   BUILD_SERVICE_ACCOUNT                          the builds' service account (EMAIL); required
#   REGION                                         default us-central1
#   PIPELINE_ROOT                                  default gs://PROJECT_ID-tunekit/pipeline-root
#   PIPELINE_SERVICE_ACCOUNT                       the pipeline runs' service account (EMAIL; '' for Vertex's)
#   DATA_BUCKET, DATA_PREFIX                       where new data lands; default PROJECT_ID-tunekit-data, data/
#   TOPIC                                          default tunekit-new-data
#   METHOD, CONFIG, DATA_FIELD                     what the new-data trigger submits; default supervised-tuning,
#                                                  examples/supervised_tuning_vertex.yaml, ''
set -euo pipefail
cd "$(dirname "$0")/.."
dry_run=false
if [ "${1:-}" = "--dry-run" ]; then dry_run=true; shift; fi
: "${PROJECT_ID:?set PROJECT_ID}" "${GITHUB_OWNER:?set GITHUB_OWNER}" "${GITHUB_REPO:?set GITHUB_REPO}"
: "${BUILD_SERVICE_ACCOUNT:?set BUILD_SERVICE_ACCOUNT (email of the service account the builds run as)}"
export REGION="${REGION:-us-central1}"
export PIPELINE_ROOT="${PIPELINE_ROOT:-gs://${PROJECT_ID}-tunekit/pipeline-root}"
export PIPELINE_SERVICE_ACCOUNT="${PIPELINE_SERVICE_ACCOUNT:-}"
export DATA_BUCKET="${DATA_BUCKET:-${PROJECT_ID}-tunekit-data}"
export DATA_PREFIX="${DATA_PREFIX:-data/}"
export TOPIC="${TOPIC:-tunekit-new-data}"
export METHOD="${METHOD:-supervised-tuning}"
export CONFIG="${CONFIG:-examples/supervised_tuning_vertex.yaml}"
export DATA_FIELD="${DATA_FIELD:-}"

run() {
  if $dry_run; then printf '+'; printf ' %q' "$@"; echo; else "$@"; fi
}

render() {  # fills every @NAME@ placeholder from the environment; fails on one left unset
  local text name
  text="$(cat "$1")"
  for name in PROJECT_ID GITHUB_OWNER GITHUB_REPO BUILD_SERVICE_ACCOUNT REGION PIPELINE_ROOT \
              PIPELINE_SERVICE_ACCOUNT DATA_BUCKET DATA_PREFIX TOPIC METHOD CONFIG DATA_FIELD; do
    text="${text//@${name}@/${!name}}"
  done
  if grep -q '@[A-Z_]*@' <<<"$text"; then
    echo "error: $1 has a placeholder this script does not fill: $(grep -o '@[A-Z_]*@' <<<"$text" | head -1)" >&2
    return 1
  fi
  printf '%s\n' "$text"
}

triggers=("$@")
if [ ${#triggers[@]} -eq 0 ]; then
  for file in cloudbuild/triggers/*.yaml; do triggers+=("$(basename "$file" .yaml)"); done
fi
for trigger in "${triggers[@]}"; do
  file="cloudbuild/triggers/${trigger}.yaml"
  [ -f "$file" ] || { echo "error: no trigger file $file" >&2; exit 2; }
  if [ "$trigger" = "retrain-on-new-data" ]; then
    if $dry_run || ! gcloud pubsub topics describe "$TOPIC" --project "$PROJECT_ID" >/dev/null 2>&1; then
      run gcloud pubsub topics create "$TOPIC" --project "$PROJECT_ID"
    fi
    if $dry_run || ! gcloud storage buckets notifications list "gs://${DATA_BUCKET}" --format='value(topic)' \
        | grep -q "/topics/${TOPIC}$"; then
      run gcloud storage buckets notifications create "gs://${DATA_BUCKET}" --topic="$TOPIC" \
        --event-types=OBJECT_FINALIZE --object-prefix="$DATA_PREFIX" --payload-format=json
    fi
  fi
  rendered="$(mktemp --suffix=.yaml)"
  render "$file" >"$rendered"
  if $dry_run; then echo "--- $file"; cat "$rendered"; fi
  run gcloud builds triggers import --project "$PROJECT_ID" --source "$rendered"
  rm -f "$rendered"
done
