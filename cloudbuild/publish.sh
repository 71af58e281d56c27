#!/usr/bin/env bash
# Uploads every compiled spec in build/compiled to the Artifact Registry Kubeflow Pipelines repository, tagged
# with the version (the git tag on tag builds, else the commit) and "latest". Run by cloudbuild.yaml's publish
# step after the checks passed and both images were pushed.
#
# Environment: KFP_REPO (https://REGION-kfp.pkg.dev/PROJECT/REPOSITORY), PUBLISH (true | false | auto: only on tag
#              builds), SHORT_SHA ('' on a manual build: cloudbuild/image_tag.sh's fallback), BUILD_ID,
#              TAG_NAME ('' on branch builds), PYTHON (default .venv/bin/python).
set -euo pipefail
: "${KFP_REPO:?set KFP_REPO}"
publish="${PUBLISH:-auto}"
if [ "${publish}" = "auto" ]; then
  publish=$([ -n "${TAG_NAME:-}" ] && echo true || echo false)
fi
if [ "${publish}" != "true" ]; then
  echo "publishing skipped (PUBLISH=${PUBLISH:-auto}, TAG_NAME='${TAG_NAME:-}')"
  exit 0
fi
source "$(dirname "$0")/image_tag.sh"
version="${TAG_NAME:-${IMAGE_TAG}}"
"${PYTHON:-.venv/bin/python}" -m tunekit.pipelines.publish --host "${KFP_REPO}" --dir build/compiled \
  --tag "${version}" --tag latest
