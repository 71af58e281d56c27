"""Compiling every pipeline to ``compiled/<method>.yaml``, deterministically, with a chosen image."""

from __future__ import annotations

import os
import tempfile

from kfp import compiler

from tunekit.components.common.image import GPU_IMAGE, IMAGE
from tunekit.pipelines.registry import METHODS, Method


def compile_method(
    method: Method, output_path: str, *, image: str | None = None, gpu_image: str | None = None
) -> str:
    """Compiles one method's pipeline to ``output_path`` and returns the path.

    The components are declared with the default image (the package version's tag); ``image`` and ``gpu_image``
    replace it in the compiled spec (Cloud Build passes the commit's tag), so nothing at import or compile time
    depends on the machine's environment.
    """
    pipeline_func, _ = method.load()
    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "pipeline.yaml")
        compiler.Compiler().compile(pipeline_func, raw)
        with open(raw, encoding="utf-8") as handle:
            text = handle.read()
    # Whole-string replacement of the exact default URIs: they only appear as executors' images.
    if gpu_image and gpu_image != GPU_IMAGE:
        for key in ("image", "image_uri"):  # custom-job specs name the image `image_uri`
            text = text.replace(f"{key}: {GPU_IMAGE}\n", f"{key}: {gpu_image}\n")
    if image and image != IMAGE:
        text = text.replace(f"image: {IMAGE}\n", f"image: {image}\n")
    os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
    with open(output_path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return output_path


def compile_all(
    output_dir: str = "compiled", *, image: str | None = None, gpu_image: str | None = None
) -> list[str]:
    """Compiles every pipeline that exists into ``output_dir``; returns the written paths."""
    return [
        compile_method(m, os.path.join(output_dir, m.compiled_name), image=image, gpu_image=gpu_image)
        for m in METHODS.values()
    ]
