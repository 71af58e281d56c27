#!/usr/bin/env bash
# Submits METHOD's published template for new data; run by cloudbuild/retrain-on-new-data.yaml.
#
# Environment: METHOD, CONFIG, DATA_FIELD ('' or a config field to point at gs://BUCKET/OBJECT), PROJECT_ID,
#              REGION, TEMPLATE (Artifact Registry template URL), PIPELINE_ROOT, SERVICE_ACCOUNT (optional),
#              WAIT ("true" to follow the run), BUCKET, OBJECT, GENERATION, EVENT (from the notification),
#              TUNEKIT (the command; default: install the package without the local extras and use its CLI),
#              DRY_RUN ("true" prints the command instead of running it).
set -euo pipefail
: "${METHOD:?}" "${CONFIG:?}" "${PROJECT_ID:?}" "${REGION:?}" "${TEMPLATE:?}" "${PIPELINE_ROOT:?}"
if [ -n "${EVENT:-}" ] && [ "${EVENT}" != "OBJECT_FINALIZE" ]; then
  echo "ignored: event ${EVENT} on gs://${BUCKET:-}/${OBJECT:-} is not a new object"
  exit 0
fi
args=(submit "${METHOD}" --config "${CONFIG}" --project "${PROJECT_ID}" --region "${REGION}"
      --pipeline-root "${PIPELINE_ROOT}" --template "${TEMPLATE}" --label trigger=new-data
      --skip-doctor)  # unattended: the release that published the template ran the checks; the run's own errors are in its log
if [ -n "${DATA_FIELD:-}" ] && [ -n "${OBJECT:-}" ]; then
  args+=(--set "${DATA_FIELD}=gs://${BUCKET}/${OBJECT}")
fi
if [ -n "${GENERATION:-}" ]; then
  # Pub/Sub delivers at least once: one job id per object generation makes a redelivered message re-attach to
  # the run it already started instead of starting (and paying for) a second one.
  args+=(--job-id "tunekit-${METHOD}-${GENERATION}")
fi
if [ -n "${SERVICE_ACCOUNT:-}" ]; then
  args+=(--service-account "${SERVICE_ACCOUNT}")
fi
if [ "${WAIT:-false}" = "true" ]; then
  args+=(--wait)
fi
if [ "${DRY_RUN:-false}" = "true" ]; then
  printf '%q ' tunekit "${args[@]}"; echo
  exit 0
fi
if [ -z "${TUNEKIT:-}" ]; then
  # Submitting needs the SDKs only, not torch: the package without its local extras installs in about a minute.
  python -m venv /workspace/.submit-venv
  /workspace/.submit-venv/bin/pip install --quiet .
  TUNEKIT=/workspace/.submit-venv/bin/tunekit
fi
"${TUNEKIT}" "${args[@]}"
