#!/usr/bin/env bash
# Builds the component images into YOUR Artifact Registry with Cloud Build (`make publish-image PROJECT=...
# REGION=...`): the one step a first real run needs before `tunekit submit`, since the default image the package
# names is not published. Needs gcloud, logged in (`gcloud auth login`), and nothing else on this machine: the
# build runs on Cloud Build (cloudbuild/images.yaml).
#
# What it runs (each documented gcloud command):
#   gcloud services enable artifactregistry.googleapis.com cloudbuild.googleapis.com --project PROJECT
#   gcloud artifacts repositories create REPOSITORY --repository-format=docker --location=REGION (if missing)
#   gcloud builds submit --config cloudbuild/images.yaml --substitutions=_REGION=...,_IMAGE_REPO=...,_VERSION=...
#
# Environment: PROJECT, REGION, REPOSITORY (default tunekit), VERSION (default pyproject.toml's version),
#              GPU ("false" skips the GPU image), GCLOUD (default gcloud).
set -euo pipefail
: "${PROJECT:?set PROJECT, e.g. make publish-image PROJECT=my-project REGION=us-central1}"
: "${REGION:?set REGION, e.g. make publish-image PROJECT=my-project REGION=us-central1}"
gcloud="${GCLOUD:-gcloud}"
repository="${REPOSITORY:-tunekit}"
root="$(cd "$(dirname "$0")/.." && pwd)"
version="${VERSION:-$(sed -n 's/^version = "\(.*\)"$/\1/p' "${root}/pyproject.toml" | head -1)}"
image_repo="${REGION}-docker.pkg.dev/${PROJECT}/${repository}"
"${gcloud}" services enable artifactregistry.googleapis.com cloudbuild.googleapis.com --project "${PROJECT}"
if ! "${gcloud}" artifacts repositories describe "${repository}" --location "${REGION}" --project "${PROJECT}" >/dev/null 2>&1; then
  "${gcloud}" artifacts repositories create "${repository}" --repository-format=docker --location "${REGION}" \
    --project "${PROJECT}" --description "tunekit component images"
fi
"${gcloud}" builds submit "${root}" --project "${PROJECT}" --config "${root}/cloudbuild/images.yaml" \
  --substitutions "_REGION=${REGION},_IMAGE_REPO=${image_repo},_VERSION=${version},_GPU=${GPU:-true}"
echo "images pushed; submit with them:"
echo "  export TUNEKIT_IMAGE=${image_repo}/components:${version}"
