"""The one place that names the component images.

The tag is the package version, never ``latest``: a compiled spec records exactly the code it runs.
``tunekit compile --image URI`` replaces these in the compiled YAML (Cloud Build passes the commit tag).

The default repository below is what the components are declared with; no build publishes to it, so a spec that
still names it would fail on image pull. A real run uses the images built into the user's own Artifact Registry
(``make publish-image PROJECT=... REGION=...``, cloudbuild/publish_image.sh), named with ``--image`` or the
``TUNEKIT_IMAGE`` environment variable; :func:`unpublished_image_error` says so.
"""

import os
from importlib import metadata

from tunekit.components.common.errors import UserError

try:
    VERSION = metadata.version("tunekit")
except metadata.PackageNotFoundError:  # running from a source tree without an install
    VERSION = "0.1.0"

IMAGE_REPOSITORY = "us-docker.pkg.dev/tunekit-oss/tunekit"
#: CPU image: the package with every dependency installed; runs every component.
IMAGE = f"{IMAGE_REPOSITORY}/components:{VERSION}"
#: GPU image: the same plus CUDA PyTorch, for open-model training on Vertex custom jobs.
GPU_IMAGE = f"{IMAGE_REPOSITORY}/components-gpu:{VERSION}"

#: Environment variables naming the images a submission compiles with (``--image`` wins over them).
IMAGE_ENV = "TUNEKIT_IMAGE"
GPU_IMAGE_ENV = "TUNEKIT_GPU_IMAGE"
#: The Artifact Registry repository ``make publish-image`` creates and pushes to.
PROJECT_REPOSITORY = "tunekit"


def project_image(project: str, region: str, *, gpu: bool = False, tag: str = VERSION) -> str:
    """The image ``make publish-image PROJECT=project REGION=region`` pushes (``REGION-docker.pkg.dev/...``)."""
    name = "components-gpu" if gpu else "components"
    return f"{region}-docker.pkg.dev/{project}/{PROJECT_REPOSITORY}/{name}:{tag}"


def gpu_image_of(image: str) -> str:
    """The GPU image beside CPU image ``image`` (``.../components:TAG`` -> ``.../components-gpu:TAG``), or ''."""
    repository, sep, tag = image.rpartition(":")
    if not sep or "/" in tag or not repository.endswith("/components"):
        return ""
    return f"{repository}-gpu:{tag}"


def chosen_images(image: str = "") -> tuple[str, str]:
    """The CPU and GPU images a submission compiles with ('' where nothing was chosen).

    The CPU image is ``image`` or ``TUNEKIT_IMAGE``; the GPU one ``TUNEKIT_GPU_IMAGE`` or the one beside it.
    """
    cpu = image or os.environ.get(IMAGE_ENV, "")
    return cpu, os.environ.get(GPU_IMAGE_ENV, "") or gpu_image_of(cpu)


def names_unpublished_image(text: str) -> bool:
    """Whether ``text`` (an image URI or a compiled spec) names the unpublished default repository."""
    return IMAGE_REPOSITORY + "/" in text


def publish_command(project: str = "", region: str = "") -> str:
    """The command that builds the images into the user's Artifact Registry."""
    return f"make publish-image PROJECT={project or 'PROJECT'} REGION={region or 'REGION'}"


def unpublished_image_error(project: str = "", region: str = "", *, path: str | None = None) -> UserError:
    """The one-line error for a spec or image naming the unpublished default repository."""
    return UserError(
        f"the component image {IMAGE_REPOSITORY}/... is not published: build the images into your project with "
        f"'{publish_command(project, region)}', then submit with "
        f"--image {project_image(project or 'PROJECT', region or 'REGION')} (or set {IMAGE_ENV})",
        path=path,
    )
