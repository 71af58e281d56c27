"""The one place that names the component images.

The tag is the package version, never ``latest``: a compiled spec records exactly the code it runs.
``tunekit compile --image URI`` replaces these in the compiled YAML (Cloud Build passes the commit tag).
"""

from importlib import metadata

try:
    VERSION = metadata.version("tunekit")
except metadata.PackageNotFoundError:  # running from a source tree without an install
    VERSION = "0.1.0"

IMAGE_REPOSITORY = "us-docker.pkg.dev/tunekit-oss/tunekit"
#: CPU image: the package with every dependency installed; runs every component.
IMAGE = f"{IMAGE_REPOSITORY}/components:{VERSION}"
#: GPU image: the same plus CUDA PyTorch, for open-model training on Vertex custom jobs.
GPU_IMAGE = f"{IMAGE_REPOSITORY}/components-gpu:{VERSION}"
