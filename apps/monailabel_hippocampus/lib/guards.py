"""The app's security rules: listen on loopback only (unless told), read and write inside the studies folder only.

MONAI Label 0.8.5, as shipped:

- ``monailabel start_server`` listens on every interface (``0.0.0.0``) unless ``--host`` says otherwise.
  An app cannot change the address uvicorn binds, so this one refuses to start instead (:func:`check_host`).
- ``App.infer`` uses the ``image`` value as a path whenever such a file exists (``?image=/home/...``,
  ``?image=../../etc/passwd``, or the same through ``params``): :func:`image_uri` accepts datastore ids only.
- ``PUT /datastore/label?tag=../../x`` and ``PUT /datastore/?image=../../x`` write files outside the
  studies folder: :class:`StudiesDatastore` accepts plain names only.
- ``PUT /datastore/image`` with an existing id overwrites that image, and ``DELETE /datastore/image`` deletes
  it: :class:`StudiesDatastore` never replaces or deletes an image of the studies folder.
- Infer ``params`` reach the task unchecked (``{"device": "meta"}``, ``{"timeout": "x"}``: HTTP 500):
  :func:`infer_params` checks the keys the task reads (HTTP 400, one line).

Which HTTP endpoints answer at all, CORS and the request queue are in :mod:`lib.server`.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from fastapi import HTTPException
from monailabel.datastore.local import LocalDatastore
from monailabel.interfaces.datastore import Datastore
from monailabel.utils.others.generic import name_to_device

from bundle.errors import InputError
from bundle.options import as_bool

__all__ = [
    "StudiesDatastore",
    "check_host",
    "image_uri",
    "infer_params",
    "is_loopback",
    "parse_json_object",
    "server_host",
]

MONAILABEL_DEFAULT_HOST = "0.0.0.0"
_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")  # a file name without folders; not "." or ".."
_SUFFIX = re.compile(r"^(\.[A-Za-z0-9]+)+$")  # ".nii.gz", ".seg.nrrd"


def server_host(argv: Sequence[str]) -> str | None:
    """The ``--host`` of a ``monailabel start_server`` command line (its default if absent); None for others."""
    if "start_server" not in argv:
        return None
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("-i", "--host", default=MONAILABEL_DEFAULT_HOST)
    return parser.parse_known_args(list(argv)[list(argv).index("start_server") + 1 :])[0].host


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (``127.0.0.0/8``, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_host(argv: Sequence[str], conf: Mapping[str, str]) -> None:
    """Raise :class:`InputError` if the server would listen beyond this machine and ``allow_remote`` is off."""
    host = server_host(argv)
    if host is None or is_loopback(host) or as_bool(conf.get("allow_remote", False), "allow_remote"):
        return
    raise InputError(
        f"--host {host}: this app listens on loopback only (monailabel's own default is {MONAILABEL_DEFAULT_HOST}, "
        "every network interface); add --host 127.0.0.1, or --conf allow_remote true to serve other machines."
    )


def image_uri(datastore: Datastore, image_id: object) -> str:
    """The file of ``image_id`` in the studies folder; HTTP 400/404 for anything that is not one of its ids.

    Paths, uploads and session images are refused: only an id listed by the datastore names an image.
    """
    if not isinstance(image_id, str) or not image_id:
        raise HTTPException(status_code=400, detail="image: give the id of an image in the studies folder.")
    if "/" in image_id or "\\" in image_id or image_id.startswith(".") or os.path.isabs(image_id):
        raise HTTPException(
            status_code=400,
            detail=f"image {image_id!r}: only ids of images in the studies folder are served "
            "(no paths, uploads or sessions).",
        )
    if image_id not in set(datastore.list_images()):
        raise HTTPException(status_code=404, detail=f"image {image_id!r}: not in the studies folder.")
    uri = datastore.get_image_uri(image_id)
    if not uri or not os.path.exists(uri):
        raise HTTPException(status_code=404, detail=f"image {image_id!r}: its file is missing.")
    return uri


def _plain_name(kind: str, value: object) -> str:
    if not isinstance(value, str) or not _NAME.match(value) or value.strip(".") == "":
        raise HTTPException(status_code=400, detail=f"{kind} {value!r}: letters, digits, '.', '_' and '-' only.")
    return value


class StudiesDatastore(LocalDatastore):
    """MONAI Label's local datastore, refusing what would leave the studies folder or change its images.

    - image ids, label tags and file suffixes must be plain names (no folders);
    - a new image is added only under an id (and a file name) that nothing in the folder uses yet: an
      existing image is never replaced (HTTP 403), whatever the suffix of the upload;
    - images are never deleted (HTTP 403): remove the file from the studies folder yourself.

    Labels (``labels/<tag>/``) are written as MONAI Label writes them: submitting a label again replaces it.
    """

    _add_lock = threading.Lock()  # an id check and the copy that follows it are one step

    def _suffixes(self) -> list[str]:
        return sorted((e.replace("*", "") for e in self._extensions), key=len, reverse=True)

    def _check_ext(self, ext: str, what: str) -> None:
        _check_suffix(ext)
        if ext not in self._suffixes():
            raise HTTPException(
                status_code=400, detail=f"{what} suffix {ext!r}: not one of {', '.join(self._suffixes())}."
            )

    def add_image(self, image_id: str, image_filename: str, image_info: dict[str, Any]) -> str:
        default_id, ext = self._to_id(os.path.basename(image_filename))
        image_id = _plain_name("image", image_id or default_id)
        self._check_ext(ext, "image")
        with self._add_lock:
            taken = [
                name
                for name in (image_id + e for e in self._suffixes())
                if os.path.lexists(os.path.join(self._datastore.image_path(), name))
            ]
            if image_id in self._datastore.objects or taken:
                raise HTTPException(
                    status_code=403,
                    detail=f"image {image_id!r}: exists in the studies folder ({', '.join(taken) or 'listed'}); "
                    "images are never replaced: upload it under a new id.",
                )
            return super().add_image(image_id, image_filename, image_info)

    def remove_image(self, image_id: str) -> None:
        raise HTTPException(
            status_code=403,
            detail=f"image {image_id!r}: images of the studies folder are never deleted through the server.",
        )

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any]) -> str:
        _plain_name("image", image_id)
        _plain_name("label tag", getattr(label_tag, "value", label_tag))
        self._check_ext(self._to_id(os.path.basename(label_filename))[1], "label")
        if image_id not in self._datastore.objects:
            raise HTTPException(status_code=404, detail=f"image {image_id!r}: not in the studies folder.")
        return super().save_label(image_id, label_filename, label_tag, label_info)


def _check_suffix(ext: str) -> None:
    if not _SUFFIX.match(ext):
        raise HTTPException(status_code=400, detail=f"file suffix {ext!r}: not a file type.")


def parse_json_object(text: object, what: str = "params") -> dict:
    """``text`` (a form field) as a JSON object; HTTP 400 with one line for anything else. Empty = ``{}``."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return {}
    if not isinstance(text, str):
        raise HTTPException(status_code=400, detail=f"{what}: send a JSON object as a form field, not a file.")
    try:
        value = json.loads(text)
    except ValueError as e:
        raise HTTPException(status_code=400, detail=f"{what}: not valid JSON ({e}).") from None
    if not isinstance(value, dict):
        raise HTTPException(status_code=400, detail=f"{what}: must be a JSON object, not {type(value).__name__}.")
    return value


_DEVICE = re.compile(r"^(cpu|cuda)(:(\d+))?$")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _bool_param(key: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "1", "0"):
        return value.strip().lower() in ("true", "yes", "1")
    raise HTTPException(status_code=400, detail=f"params: {key} {value!r}: must be true or false.")


def infer_params(params: Mapping[str, Any], model: str | None = None) -> dict:
    """The infer request's ``params`` with every key the task reads checked; HTTP 400 (one line) otherwise.

    ``device``: ``cpu``, ``cuda``, ``cuda:N`` or a name MONAI Label lists in ``/info/`` (CUDA names fall back
    to the CPU where there is no GPU, as in MONAI Label); ``save_label``: true/false; ``label_tag``: a plain
    name; ``timeout``: seconds > 0; ``logging``: a log level; ``model``: the model of the URL, if given;
    ``image``: a string (checked later against the studies folder). Other keys are passed on unread.
    """
    params = dict(params)
    if "device" in params:
        device = params["device"]
        if isinstance(device, list) and len(device) == 1:
            device = device[0]
        if not isinstance(device, str) or not device:
            raise HTTPException(status_code=400, detail=f"params: device {device!r}: must be a device name.")
        resolved = name_to_device(device)
        match = _DEVICE.match(resolved)
        if not match or (match.group(3) is not None and int(match.group(3)) >= torch.cuda.device_count()):
            choices = ["cpu", "cuda", "cuda:N"] if torch.cuda.is_available() else ["cpu"]
            raise HTTPException(
                status_code=400, detail=f"params: device {device!r}: not a device here; use {', '.join(choices)}."
            )
        params["device"] = resolved
    for key in ("save_label", "skip_writer"):
        if key in params:
            params[key] = _bool_param(key, params[key])
    if params.get("skip_writer"):
        raise HTTPException(status_code=400, detail="params: skip_writer true: not supported (no mask to send).")
    if "label_tag" in params:
        _plain_name("params: label_tag", params["label_tag"])
    if "timeout" in params:
        timeout = params["timeout"]
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise HTTPException(status_code=400, detail=f"params: timeout {timeout!r}: must be seconds > 0.")
    if "logging" in params:
        level = params["logging"]
        if not isinstance(level, str) or level.upper() not in _LOG_LEVELS:
            raise HTTPException(status_code=400, detail=f"params: logging {level!r}: one of {', '.join(_LOG_LEVELS)}.")
    if "model" in params and model is not None and params["model"] != model:
        raise HTTPException(
            status_code=400, detail=f"params: model {params['model']!r}: the URL names model {model!r}."
        )
    if "image" in params and not isinstance(params["image"], str):
        raise HTTPException(status_code=400, detail="params: image: give the id of an image in the studies folder.")
    return params
