#!/usr/bin/env bash
# Builds and pushes one component image (a target of components/Dockerfile), tagged with the build's tag
# (cloudbuild/image_tag.sh: the commit's short SHA, or manual-BUILD_ID on a manual build) and, on a tag build,
# with the git tag too; EXTRA_TAG adds one more (make publish-image passes the package version).
# Run from the repository root by the image steps of cloudbuild.yaml and cloudbuild/images.yaml.
#
# Usage: cloudbuild/build_image.sh TARGET IMAGE_NAME
# Environment: IMAGE_REPO (Docker repository, e.g. us-central1-docker.pkg.dev/PROJECT/tunekit), SHORT_SHA
#              ('' on a manual build), BUILD_ID, TAG_NAME ('' on branch builds), EXTRA_TAG (optional),
#              BUILD ("false" skips this image).
set -euo pipefail
target="${1:?usage: build_image.sh TARGET IMAGE_NAME}"
name="${2:?usage: build_image.sh TARGET IMAGE_NAME}"
: "${IMAGE_REPO:?set IMAGE_REPO}"
if [ "${BUILD:-true}" = "false" ]; then
  echo "${name}: not built (BUILD=false)"
  exit 0
fi
source "$(dirname "$0")/image_tag.sh"
image="${IMAGE_REPO}/${name}"
tags=(-t "${image}:${IMAGE_TAG}" -t "${image}:buildcache")
for extra in "${TAG_NAME:-}" "${EXTRA_TAG:-}"; do
  if [ -n "${extra}" ]; then
    tags+=(-t "${image}:${extra}")
  fi
done
# The previous build's layers (torch alone is ~1 GB for the GPU image); a missing cache image is fine.
docker pull "${image}:buildcache" || true
DOCKER_BUILDKIT=1 docker build -f components/Dockerfile --target "${target}" \
  --build-arg BUILDKIT_INLINE_CACHE=1 --cache-from "${image}:buildcache" \
  --label "org.opencontainers.image.revision=${IMAGE_TAG}" "${tags[@]}" .
docker push --all-tags "${image}"
echo "pushed ${image}:${IMAGE_TAG}${TAG_NAME:+ and :${TAG_NAME}}${EXTRA_TAG:+ and :${EXTRA_TAG}}"
