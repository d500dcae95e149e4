"""MONAI Label app: the bundle's hippocampus models (fine-tuned SNN by default, the ANN) for 3D Slicer & co.

    monailabel start_server --app apps/monailabel_hippocampus --studies STUDIES --conf models snn,ann --host 127.0.0.1

Labels: ``anterior`` (1, hippocampus head) and ``posterior`` (2, body and tail). The conf keys are in
``lib/configs/segmentation.py``; which HTTP endpoints answer (inference and label submission by default), CORS
and the inference queue are in ``lib/server.py``; usage, security and the fixes for MONAI Label 0.8.5 on
MONAI 1.6 are in ``docs/monailabel.md``.

A refusal at start (``--host`` beyond loopback, a missing model file, a bad conf value) ends the server
process with status 2 and one line ``error: ...`` on stderr, without a traceback.
"""

from __future__ import annotations

import copy
import logging
import os
import sys

from fastapi import HTTPException
from lib.configs.segmentation import model_choices
from lib.guards import StudiesDatastore, check_host, image_uri, infer_params, server_host
from lib.infers.segmentation import BundleSegmentation
from lib.server import install, installed, policy_from_conf
from monailabel.config import settings
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.datastore import Datastore, DefaultLabelTag
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.utils.others.generic import handle_torch_linalg_multithread

import bundle
from bundle.errors import InputError
from bundle.inference.settings import InferenceSettings
from bundle.runtime import tune_allocator

logger = logging.getLogger(__name__)

STUDY_EXTENSIONS = ("*.nii.gz", "*.nii", "*.nrrd", "*.mha")


class HippocampusApp(MONAILabelApp):
    """Serves the models named by ``--conf models`` (default ``snn,ann``); the first is the default model."""

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]):
        conf = dict(conf or {})
        try:
            check_host(sys.argv, conf)
            # the bundle's configs/inference.json (or --conf inference_config), as hippo-snn reads it
            self.settings = InferenceSettings.from_config(conf.get("inference_config") or None)
            policy_from_conf(conf, self.settings.queue_size)  # bad conf values stop the server before the models load
            self.choices = model_choices(conf)
            tune_allocator()
            super().__init__(
                app_dir=app_dir,
                studies=studies,
                conf=conf,
                name="Hippocampus (spiking U-Net)",
                description="Hippocampus head (anterior) and body (posterior) from T1 MRI with a spiking U-Net",
                version=bundle.__version__,
            )
            # the HTTP rules of lib/server.py, in the running server (no-op outside one)
            install(conf, self.settings.queue_size)
        except InputError as e:
            if server_host(sys.argv) is None or installed():  # not a server, or a running one (POST /reload)
                raise
            _refuse_to_start(e)

    def init_infers(self) -> dict[str, InferTask]:
        return {c.name: BundleSegmentation(c, self.settings) for c in self.choices}

    def init_datastore(self) -> Datastore:
        if self.studies.startswith(("http://", "https://")):
            return super().init_datastore()  # DICOMweb, XNAT, DSA: their servers decide what is reachable
        return StudiesDatastore(
            self.studies,
            # NIfTI as MONAI Label lists it, and the scanner formats the bundle reads (NRRD, MetaImage)
            extensions=[*dict.fromkeys([*settings.MONAI_LABEL_DATASTORE_FILE_EXT, *STUDY_EXTENSIONS])],
            auto_reload=settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD,
            read_only=settings.MONAI_LABEL_DATASTORE_READ_ONLY,
        )

    def init_trainers(self) -> dict:
        return {}

    def infer(self, request: dict, datastore=None) -> dict:
        """MONAI Label's ``infer``, except that ``image`` must be an id of the studies folder (else HTTP 4xx).

        0.8.5 would also take any existing file path as the image; that branch is the one left out here.
        """
        model = request.get("model")
        task = self._infers.get(model)
        if task is None:
            raise HTTPException(status_code=404, detail=f"model {model!r}: not served; models: {list(self._infers)}.")
        datastore = datastore or self.datastore()
        request = infer_params(copy.deepcopy(request), model)
        image_id = request.get("image")
        request["image"] = image_uri(datastore, image_id)
        request["description"] = task.description

        if self._infers_threadpool:
            future = self._infers_threadpool.submit(_run_task, task, request)
            result_file, result_json = future.result(request.get("timeout", settings.MONAI_LABEL_INFER_TIMEOUT))
        else:
            result_file, result_json = task(request)

        label_id = result_file
        if request.get("save_label", False):  # StudiesDatastore refuses a label_tag that is not a plain name
            tag = request.get("label_tag", DefaultLabelTag.ORIGINAL)
            label_id = datastore.save_label(image_id, result_file, tag, {"model": model, "params": result_json})
        return {"label": label_id, "tag": DefaultLabelTag.ORIGINAL, "file": result_file, "params": result_json}

    def infer_wsi(self, request: dict, datastore=None) -> dict:
        raise HTTPException(status_code=404, detail="this app has no whole-slide (WSI) models.")

    def model_file(self, model, validate=True):
        """The served checkpoint; MONAI Label asks with ``validate=False`` only to overwrite it (``PUT /model``)."""
        if not validate:
            raise HTTPException(status_code=403, detail="model files are never replaced through the server.")
        return super().model_file(model, validate)


def _refuse_to_start(error: Exception) -> None:
    """End the server process with one line on stderr (inside uvicorn's start-up, an exception would be logged
    with two tracebacks and 'Application startup failed' instead)."""
    line = f"error: {' '.join(str(error).split())}"
    record = logger.makeRecord(logger.name, logging.ERROR, __file__, 0, line, None, None)
    for handler in logging.getLogger().handlers:  # the log file (apps/.../logs/app.log) gets it too
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
            handler.flush()
    sys.stdout.flush()
    print(line, file=sys.stderr, flush=True)
    os._exit(2)


def _run_task(task: InferTask, request: dict):
    handle_torch_linalg_multithread(request)
    return task(request)
