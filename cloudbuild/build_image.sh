#!/usr/bin/env bash
# Builds and pushes one component image (a target of components/Dockerfile), tagged with the commit's short SHA
# and, on a tag build, with the tag too. Run from the repository root by cloudbuild.yaml's image steps.
#
# Usage: cloudbuild/build_image.sh TARGET IMAGE_NAME
# Environment: IMAGE_REPO (Docker repository, e.g. us-central1-docker.pkg.dev/PROJECT/tunekit), SHORT_SHA,
#              TAG_NAME ('' on branch builds).
set -euo pipefail
target="${1:?usage: build_image.sh TARGET IMAGE_NAME}"
name="${2:?usage: build_image.sh TARGET IMAGE_NAME}"
: "${IMAGE_REPO:?set IMAGE_REPO}" "${SHORT_SHA:?set SHORT_SHA}"
image="${IMAGE_REPO}/${name}"
tags=(-t "${image}:${SHORT_SHA}" -t "${image}:buildcache")
if [ -n "${TAG_NAME:-}" ]; then
  tags+=(-t "${image}:${TAG_NAME}")
fi
# The previous build's layers (torch alone is ~1 GB for the GPU image); a missing cache image is fine.
docker pull "${image}:buildcache" || true
DOCKER_BUILDKIT=1 docker build -f components/Dockerfile --target "${target}" \
  --build-arg BUILDKIT_INLINE_CACHE=1 --cache-from "${image}:buildcache" "${tags[@]}" .
docker push --all-tags "${image}"
echo "pushed ${image}:${SHORT_SHA}${TAG_NAME:+ and :${TAG_NAME}}"
