#!/usr/bin/env bash
# Compiles every pipeline into build/compiled with this build's images (never `latest`); run by cloudbuild.yaml's
# compile step. The tag is cloudbuild/image_tag.sh's, the same the image steps pushed.
#
# Environment: IMAGE_REPO, SHORT_SHA ('' on a manual build), BUILD_ID, TUNEKIT (default .venv/bin/tunekit).
set -euo pipefail
: "${IMAGE_REPO:?set IMAGE_REPO}"
source "$(dirname "$0")/image_tag.sh"
"${TUNEKIT:-.venv/bin/tunekit}" compile --output-dir build/compiled \
  --image "${IMAGE_REPO}/components:${IMAGE_TAG}" --gpu-image "${IMAGE_REPO}/components-gpu:${IMAGE_TAG}"
