#!/usr/bin/env bash
# Sourced by the build scripts: IMAGE_TAG, the one tag of this build's images and specs.
#
# Trigger builds have SHORT_SHA; a manual `gcloud builds submit` leaves it empty (Cloud Build documents SHORT_SHA
# as available only for triggered builds: https://cloud.google.com/build/docs/configuring-builds/substitute-variable-values),
# so the tag falls back to manual-BUILD_ID, the same in every step of one build, or to the time outside Cloud Build.
IMAGE_TAG="${SHORT_SHA:-manual-${BUILD_ID:-$(date -u +%Y%m%d%H%M%S)}}"
export IMAGE_TAG
