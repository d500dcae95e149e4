"""The app's security rules: listen on loopback only (unless told), read and write inside the studies folder only.

MONAI Label 0.8.5, as shipped:

- ``monailabel start_server`` listens on every interface (``0.0.0.0``) unless ``--host`` says otherwise.
  An app cannot change the address uvicorn binds, so this one refuses to start instead (:func:`check_host`).
- ``App.infer`` uses the ``image`` value as a path whenever such a file exists (``?image=/home/...``,
  ``?image=../../etc/passwd``, or the same through ``params``): :func:`image_uri` accepts datastore ids only.
- ``PUT /datastore/label?tag=../../x`` and ``PUT /datastore/?image=../../x`` write files outside the
  studies folder: :class:`StudiesDatastore` accepts plain names only.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import HTTPException
from monailabel.datastore.local import LocalDatastore
from monailabel.interfaces.datastore import Datastore

from bundle.errors import InputError
from bundle.options import as_bool

__all__ = ["StudiesDatastore", "check_host", "image_uri", "server_host"]

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


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_host(argv: Sequence[str], conf: Mapping[str, str]) -> None:
    """Raise :class:`InputError` if the server would listen beyond this machine and ``allow_remote`` is off."""
    host = server_host(argv)
    if host is None or _is_loopback(host) or as_bool(conf.get("allow_remote", False), "allow_remote"):
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
    """MONAI Label's local datastore, refusing image ids, label tags and file suffixes that would leave it."""

    def add_image(self, image_id: str, image_filename: str, image_info: dict[str, Any]) -> str:
        default_id, ext = self._to_id(os.path.basename(image_filename))
        _plain_name("image", image_id or default_id)
        _check_suffix(ext)
        return super().add_image(image_id, image_filename, image_info)

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any]) -> str:
        _plain_name("image", image_id)
        _plain_name("label tag", getattr(label_tag, "value", label_tag))
        _check_suffix(self._to_id(os.path.basename(label_filename))[1])
        return super().save_label(image_id, label_filename, label_tag, label_info)


def _check_suffix(ext: str) -> None:
    if not _SUFFIX.match(ext):
        raise HTTPException(status_code=400, detail=f"file suffix {ext!r}: not a file type.")
