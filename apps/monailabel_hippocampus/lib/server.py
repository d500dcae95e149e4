"""The app's HTTP rules on MONAI Label 0.8.5's server: which endpoints answer, CORS, and an inference queue.

MONAI Label builds its FastAPI server (``monailabel.app:app``) before it loads an app, and then answers every
endpoint it has: deleting and replacing images, replacing, deleting and downloading model files, training,
scoring, sessions; with CORS open to every origin *with* credentials. Its infer endpoint is an ``async``
function that runs the model on the event loop, so while one inference runs nothing else is served, and every
queued caller is answered only once the whole queue is done.

:func:`install` (called by the app when the server loads it) rebuilds that server's middleware stack with:

- MONAI Label's ``CORSMiddleware`` re-configured: only the origins of ``--conf cors_origins`` (and of MONAI
  Label's own ``MONAI_LABEL_CORS_ORIGINS``), never credentials;
- :class:`HttpGuard`, which sorts every request by :data:`RULES` before any MONAI Label endpoint sees it:
  ``open`` endpoints answer, ``admin`` endpoints answer only with ``--conf allow_admin true``, ``never``
  endpoints never do (HTTP 403 with a one-line ``detail``). It also refuses ``Host`` headers that are not
  loopback names (DNS rebinding) and state-changing requests from foreign web pages (a browser's ``Origin``),
  and turns unexpected errors into a one-line HTTP 500 (the traceback goes to the server log).
- the app's own handlers for inference, label submission and image upload (:class:`HttpGuard` ``_infer``,
  ``_save_label``, ``_add_image``): parameters are checked first (HTTP 400, one line), and inference runs in a
  worker thread behind a first-come-first-served queue per model, so each caller is answered as soon as its own
  inference is done and the server keeps answering meanwhile. Each queue holds at most ``queue_size`` requests
  (``configs/inference.json``, or ``--conf queue_size``); beyond that the server sheds load: HTTP 503 with a
  ``Retry-After`` header and one line (:class:`InferenceQueue`).

The middleware stack of a started Starlette app cannot take new middleware (``add_middleware`` raises), but
the app is loaded inside the server's start-up (lifespan) event, before any HTTP request: rebuilding
``app.middleware_stack`` there makes every HTTP request go through the new stack. :func:`install` checks that
it did, and the server does not start if it did not.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import pathlib
import re
import shutil
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Self

from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from monailabel.config import settings
from monailabel.interfaces.exception import (
    ImageNotFoundException,
    LabelNotFoundException,
    MONAILabelError,
    MONAILabelException,
)
from monailabel.interfaces.utils.app import app_instance
from starlette.background import BackgroundTasks
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bundle.errors import InputError
from bundle.options import as_bool
from lib.guards import image_uri, infer_params, is_loopback, parse_json_object

__all__ = [
    "RULES",
    "HttpGuard",
    "InferenceQueue",
    "Policy",
    "Rule",
    "classify",
    "install",
    "installed",
    "policy_from_conf",
]

logger = logging.getLogger(__name__)

OPEN, ADMIN, NEVER = "open", "admin", "never"
READ = frozenset({"GET", "HEAD"})
ANY = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


@dataclass(frozen=True)
class Rule:
    """Requests whose method is in ``methods`` and whose path (API prefix removed, no trailing ``/``) matches
    ``pattern`` in full belong to ``group``; ``handler`` names the app's own handler, if it serves them."""

    methods: frozenset
    pattern: str
    group: str
    what: str
    handler: str | None = None

    def matches(self, method: str, path: str) -> bool:
        return method in self.methods and re.fullmatch(self.pattern, path) is not None


# First match wins. A request that matches none is ``admin``: an endpoint that a later MONAI Label adds stays
# off by default. tests/test_monailabel_app.py checks that every route of monailabel.app matches a rule.
RULES: tuple[Rule, ...] = (
    # never, whatever the conf
    Rule(frozenset({"DELETE"}), r"/datastore(/image)?", NEVER, "delete an image of the studies folder"),
    Rule(frozenset({"PUT", "DELETE"}), r"/model/.+", NEVER, "replace or delete a model file"),
    # served by default: what 3D Slicer needs to segment, correct and submit
    Rule(READ, r"|/docs|/openapi\.json|/favicon\.ico|/static/.*", OPEN, "API pages"),
    Rule(frozenset({"GET", "HEAD", "POST"}), r"/auth(/.*)?", OPEN, "log in, with MONAI_LABEL_AUTH_ENABLE only"),
    Rule(READ, r"/info", OPEN, "models, labels, image count"),
    Rule(frozenset({"POST"}), r"/infer/[^/]+", OPEN, "run a model on an image of the studies folder", "infer"),
    Rule(frozenset({"POST"}), r"/infer/wsi(_v2)?/[^/]+", OPEN, "whole-slide inference; this app has none: 404"),
    Rule(frozenset({"POST"}), r"/activelearning/[^/]+", OPEN, "next sample to label"),
    Rule(READ, r"/datastore", OPEN, "list images and labels"),
    Rule(READ, r"/datastore/(image|label)(/info)?", OPEN, "download or check an image or label, or read its info"),
    Rule(frozenset({"PUT"}), r"/datastore/label", OPEN, "submit a label, saved as labels/<tag>/<image>", "save_label"),
    Rule(frozenset({"PUT"}), r"/datastore(/image)?", OPEN, "upload a new image; never replaces one", "add_image"),
    Rule(READ, r"/train", OPEN, "training status, read-only; this app has no trainer"),
    # admin: only with --conf allow_admin true
    Rule(frozenset({"DELETE"}), r"/datastore/label", ADMIN, "delete a label"),
    Rule(frozenset({"PUT"}), r"/datastore/(image/info|label/info|updatelabelinfo)", ADMIN, "edit image/label info"),
    Rule(READ, r"/datastore/dataset", ADMIN, "download every image and label as a ZIP"),
    Rule(READ, r"/model/(info/)?[^/]+", ADMIN, "download a model file or its checksum"),
    Rule(ANY, r"/train(/.*)?", ADMIN, "start or stop training, a subprocess"),
    Rule(ANY, r"/scoring(/.*)?", ADMIN, "scoring jobs, a subprocess"),
    Rule(ANY, r"/batch/infer(/.*)?", ADMIN, "batch inference jobs, a subprocess that saves labels"),
    Rule(ANY, r"/session(/.*)?", ADMIN, "sessions: uploaded images kept on the server"),
    Rule(ANY, r"/logs(/.*)?", ADMIN, "the server log, GPU status"),
    Rule(ANY, r"/ohif(/.*)?", ADMIN, "OHIF viewer files"),
    Rule(ANY, r"/proxy(/.*)?", ADMIN, "DICOMweb proxy: reads and writes the DICOMweb server"),
    Rule(frozenset({"POST"}), r"/reload", ADMIN, "reload the app and every model"),
)
UNLISTED = Rule(ANY, r".*", ADMIN, "not a listed endpoint")

_REFUSED = {
    NEVER: "this server never deletes or replaces images of the studies folder or model files",
    ADMIN: "an admin endpoint; admin endpoints are off unless the server starts with --conf allow_admin true",
}


def route_path(scope: Scope) -> str:
    """The request path as MONAI Label's routes see it: no root path, no API prefix, no trailing ``/``."""
    path, root = scope["path"], scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        path = path[len(root) :]
    prefix = (settings.MONAI_LABEL_API_STR or "").rstrip("/")
    if prefix and (path == prefix or path.startswith(prefix + "/")):
        path = path[len(prefix) :]
    return path.rstrip("/")


def classify(method: str, path: str) -> Rule:
    """The first rule of :data:`RULES` that ``method`` and ``path`` (see :func:`route_path`) match."""
    method = method.upper()
    return next((rule for rule in RULES if rule.matches(method, path)), UNLISTED)


@dataclass(frozen=True)
class Policy:
    """What the conf turned on: admin endpoints, CORS origins, and whether ``Host`` must be a loopback name."""

    allow_admin: bool = False
    cors_origins: tuple[str, ...] = ()
    loopback_host: bool = True
    queue_size: int = 16  # inference requests per model, running and waiting; more get 503


_ORIGIN = re.compile(r"^https?://[^/\s?#@]+$")


def _origins(values: Iterable[str], source: str) -> list[str]:
    origins = []
    for value in values:
        origin = str(value).strip().rstrip("/")  # pydantic writes MONAI_LABEL_CORS_ORIGINS URLs with a "/"
        if not origin:
            continue
        if not _ORIGIN.match(origin):
            raise InputError(
                f"{source} {value!r}: not an origin; list scheme://host[:port] values, comma-separated "
                "(e.g. http://localhost:3000); '*' is not accepted."
            )
        origins.append(origin)
    return origins


def policy_from_conf(conf: Mapping[str, str], queue_size: int = Policy.queue_size) -> Policy:
    """The :class:`Policy` of ``--conf`` (``allow_admin``, ``cors_origins``, ``allow_remote``, ``queue_size``, whose
    default is ``queue_size``: the bundle's ``configs/inference.json``); InputError if bad."""
    origins = _origins(str(conf.get("cors_origins", "")).split(","), "--conf cors_origins")
    origins += _origins(settings.MONAI_LABEL_CORS_ORIGINS or [], "MONAI_LABEL_CORS_ORIGINS")
    size = conf.get("queue_size", queue_size)
    try:
        size = int(size)
    except (TypeError, ValueError):
        size = 0
    if size < 1:
        raise InputError(f"--conf queue_size {conf.get('queue_size')!r}: must be a whole number >= 1.")
    return Policy(
        allow_admin=as_bool(conf.get("allow_admin", False), "--conf allow_admin"),
        cors_origins=tuple(dict.fromkeys(origins)),
        loopback_host=not as_bool(conf.get("allow_remote", False), "--conf allow_remote"),
        queue_size=size,
    )


class InferenceQueue:
    """One model's inference requests: first come, first served, at most ``size`` running and waiting.

    ``async with queue:`` waits for the model (``asyncio.Lock`` wakes its waiters in order); :meth:`refusal` says
    why a new request cannot join (the queue is full) and when to try again: the model's mean inference time so far,
    the time before a place frees (at least 1 s). A bounded queue keeps a burst from growing memory without bound.
    """

    def __init__(self, size: int):
        self.size, self.held, self.mean_s = size, 0, None
        self._lock = asyncio.Lock()

    def refusal(self, model: str) -> HTTPException | None:
        if self.held < self.size:
            return None
        retry = max(1, math.ceil(self.mean_s or 1.0))
        return HTTPException(
            503,
            f"model {model!r} is busy: {self.held} requests running or waiting (queue_size {self.size}); "
            f"try again in {retry} s.",
            headers={"Retry-After": str(retry)},
        )

    async def __aenter__(self) -> Self:
        self.held += 1
        try:
            await self._lock.acquire()
        except BaseException:
            self.held -= 1
            raise
        self._start = time.monotonic()
        return self

    async def __aexit__(self, *exc: object) -> None:
        seconds = time.monotonic() - self._start
        self.mean_s = seconds if self.mean_s is None else 0.8 * self.mean_s + 0.2 * seconds
        self._lock.release()
        self.held -= 1


def _one_line(text: object) -> str:
    return " ".join(str(text).split()) or "error"


def _error(status: int, detail: object, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": _one_line(detail)}, status_code=status, headers=dict(headers or {}))


def _host_name(host: str) -> str:
    if host.startswith("["):  # [::1]:8000
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class HttpGuard:
    """ASGI middleware: the rules of this module for every HTTP request (see the module's docstring)."""

    # MONAI Label re-imports the app's modules when it reloads the app (POST /reload): the class changes,
    # so an installed guard is recognised by this marker, not by isinstance
    hippocampus_guard = True

    def __init__(self, app: ASGIApp, policy: Policy = Policy()) -> None:
        self.app, self.policy = app, policy
        self._queues: dict[str, InferenceQueue] = {}  # one bounded first-come-first-served queue per model
        self._handlers = {"infer": self._infer, "save_label": self._save_label, "add_image": self._add_image}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        rule = classify(scope["method"], route_path(scope))
        started = False

        async def send_tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            if rule.handler:
                request = Request(scope, receive)
                try:
                    response = await self._handlers[rule.handler](request)
                finally:
                    await request.close()
                await response(scope, receive, send_tracked)
            else:
                await self.app(scope, receive, send_tracked)
        except Exception as e:
            if started:
                raise
            await self._error_response(scope, e)(scope, receive, send_tracked)

    def _refusal(self, scope: Scope) -> Response | None:
        headers = Headers(scope=scope)
        method, path = scope["method"], route_path(scope)
        host = headers.get("host")
        if self.policy.loopback_host and host and not is_loopback(_host_name(host)):
            return _error(400, f"Host {host!r}: this server answers loopback names only (localhost, 127.0.0.1, ::1).")
        origin = headers.get("origin")
        if origin and method not in ("GET", "HEAD", "OPTIONS") and not self._same_or_allowed(origin, host):
            return _error(403, f"{method} from origin {origin!r}: refused; list it with --conf cors_origins.")
        rule = classify(method, path)
        if rule.group == NEVER or (rule.group == ADMIN and not self.policy.allow_admin):
            return _error(403, f"{method} {path or '/'} ({rule.what}): refused; {_REFUSED[rule.group]}.")
        return None

    def _same_or_allowed(self, origin: str, host: str | None) -> bool:
        origin = origin.rstrip("/")
        if origin in self.policy.cors_origins:
            return True
        return bool(host) and urllib.parse.urlsplit(origin).netloc == host

    @staticmethod
    def _error_response(scope: Scope, e: Exception) -> Response:
        if isinstance(e, HTTPException):
            return _error(e.status_code, e.detail, e.headers)
        if isinstance(e, MONAILabelException):
            not_found = isinstance(e, (ImageNotFoundException, LabelNotFoundException))
            status = 404 if not_found else 400 if e.error == MONAILabelError.INVALID_INPUT else 500
            if status == 500:
                logger.exception(f"{scope['method']} {scope['path']}: {e.msg}")
            return _error(status, e.msg)
        logger.exception(f"{scope['method']} {scope['path']}: {type(e).__name__}: {e}")
        cause = f"{type(e).__name__}: {_one_line(e)[:200]}"
        return _error(500, f"internal error ({cause}); the traceback is in the server log.")

    # --- the app's own handlers -------------------------------------------------------------------------

    async def _infer(self, request: Request) -> Response:
        """``POST /infer/{model}``: MONAI Label's infer endpoint, with its parameters checked before the queue,
        the model run in a worker thread, one request per model at a time, in order of arrival."""
        await _authorize(request, settings.MONAI_LABEL_AUTH_ROLE_USER)
        model = route_path(request.scope).rsplit("/", 1)[1]
        query = request.query_params
        output = query.get("output") or None
        if output not in (None, "image", "json", "all"):  # dicom_seg needs a DICOMweb datastore
            raise HTTPException(400, f"output {output!r}: one of image, json, all.")
        if query.get("session_id"):
            raise HTTPException(400, "session_id: sessions are off; give the id of an image in the studies folder.")
        form = await request.form()
        for field in ("file", "label"):
            if form.get(field) is not None:
                raise HTTPException(
                    400, f"{field}: uploads are not segmented; add the image with PUT /datastore/ and pass its id."
                )
        instance = app_instance()
        if model not in instance._infers:
            raise HTTPException(404, f"model {model!r}: not served; models: {list(instance._infers)}.")
        params = infer_params(parse_json_object(form.get("params")), model)
        infer_request = {"model": model, "image": query.get("image", ""), **params}
        infer_request["model"] = model
        datastore = instance.datastore()
        await run_in_threadpool(image_uri, datastore, infer_request["image"])  # 400/404 before queueing

        queue = self._queues.setdefault(model, InferenceQueue(self.policy.queue_size))
        refusal = queue.refusal(model)
        if refusal is not None:
            logger.info(f"infer {model} {infer_request['image']}: {refusal.detail}")
            raise refusal
        async with queue:
            if await request.is_disconnected():
                logger.info(f"infer {model} {infer_request['image']}: the client left the queue; not run.")
                return Response(status_code=499)
            result = await run_in_threadpool(instance.infer, infer_request)

        from monailabel.endpoints.infer import send_response  # MONAI Label's output formats

        tasks = BackgroundTasks()
        response = send_response(datastore, result, output, tasks)
        if not isinstance(response, Response):
            response = JSONResponse(jsonable_encoder(response))
        response.background = tasks  # deletes the result file once sent
        return response

    async def _save_label(self, request: Request) -> Response:
        """``PUT /datastore/label?image=ID&tag=TAG`` (3D Slicer's *Submit Label*): saved as ``labels/TAG/ID.*``."""
        user = await _authorize(request, settings.MONAI_LABEL_AUTH_ROLE_ANNOTATOR)
        image = request.query_params.get("image", "")
        tag = request.query_params.get("tag") or "final"
        if not image:
            raise HTTPException(400, "image: give the id of the image this label belongs to.")
        form = await request.form()
        upload = _upload(form.get("label"), "label")
        params = parse_json_object(form.get("params"))

        def save() -> dict:
            with _spooled(upload) as label_file:
                instance = app_instance()
                label_id = instance.datastore().save_label(image, label_file, tag, params)
                result = instance.on_save_label(image, label_id) or {}
                result.update({"image": image, "label": label_id})
                return result

        logger.info(f"Saving label for {image}, tag {tag} ({user or 'no auth'})")
        return JSONResponse(jsonable_encoder(await run_in_threadpool(save)))

    async def _add_image(self, request: Request) -> Response:
        """``PUT /datastore/?image=ID`` (3D Slicer's *Upload Volume*): a new image, never one that exists."""
        user = await _authorize(request, settings.MONAI_LABEL_AUTH_ROLE_ANNOTATOR)
        form = await request.form()
        upload = _upload(form.get("file"), "file")
        params = parse_json_object(form.get("params"))
        if user:
            params["user"] = user
        ext = _file_suffix(upload)
        image = request.query_params.get("image") or os.path.basename(upload.filename or "").replace(ext, "")

        def add() -> dict:
            with _spooled(upload) as image_file:
                return {"image": app_instance().datastore().add_image(image, image_file, params)}

        return JSONResponse(jsonable_encoder(await run_in_threadpool(add)))


def _upload(value: object, field: str) -> UploadFile:
    if not isinstance(value, UploadFile):
        raise HTTPException(400, f"{field}: attach the file as the multipart/form-data field {field!r}.")
    return value


def _file_suffix(upload: UploadFile) -> str:
    suffix = "".join(pathlib.PurePath(upload.filename).suffixes) if upload.filename else ".nii.gz"
    if not re.fullmatch(r"(\.[A-Za-z0-9]+)+", suffix):
        raise HTTPException(400, f"file name {upload.filename!r}: no file type (e.g. .nii.gz).")
    return suffix


class _spooled:
    """The upload copied to a temporary file with the upload's suffix (deleted on exit)."""

    def __init__(self, upload: UploadFile):
        self.upload = upload

    def __enter__(self) -> str:
        fd, self.path = tempfile.mkstemp(suffix=_file_suffix(self.upload))
        with os.fdopen(fd, "wb") as out:
            self.upload.file.seek(0)
            shutil.copyfileobj(self.upload.file, out)
        return self.path

    def __exit__(self, *exc: object) -> None:
        os.remove(self.path)


async def _authorize(request: Request, role: str) -> str | None:
    """MONAI Label's role check for the app's own handlers (only with ``MONAI_LABEL_AUTH_ENABLE``)."""
    if not settings.MONAI_LABEL_AUTH_ENABLE:
        return None
    from jwt import InvalidTokenError
    from monailabel.endpoints.user.auth import from_token

    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(401, "Not authenticated", headers={"WWW-Authenticate": "Bearer"})
    try:
        user = await run_in_threadpool(from_token, token)
    except InvalidTokenError:
        raise HTTPException(401, "Could not validate credentials", headers={"WWW-Authenticate": "Bearer"}) from None
    if role not in user.roles:
        raise HTTPException(403, f'Role "{role}" is required to perform this action')
    return user.username


async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
    """FastAPI's request validation errors (bad query values, bad JSON bodies) as HTTP 400 with one line."""
    errors = exc.errors()
    first = errors[0] if errors else {}
    loc = [str(part) for part in first.get("loc", ()) if not isinstance(part, int)]
    where = ".".join(part for part in loc if part not in ("query", "path")) or "request"
    cause = (first.get("ctx") or {}).get("error")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return _error(400, f"{where}: {first.get('msg', 'invalid')}{f' ({cause})' if cause else ''}{more}.")


def _chain(app: Any) -> list:
    """The middleware instances of a built stack, outermost first."""
    chain, seen = [], set()
    while app is not None and id(app) not in seen:
        seen.add(id(app))
        chain.append(app)
        app = getattr(app, "app", None)
    return chain


def installed() -> bool:
    """Whether this process's MONAI Label server already runs with :class:`HttpGuard` (it has started)."""
    module = sys.modules.get("monailabel.app")
    stack = getattr(getattr(module, "app", None), "middleware_stack", None)
    return any(_is_guard(type(m)) for m in _chain(stack))


def _is_guard(cls: object) -> bool:
    return getattr(cls, "hippocampus_guard", False) is True


def install(conf: Mapping[str, str], queue_size: int = Policy.queue_size) -> Policy | None:
    """Put :class:`HttpGuard` and the CORS policy of ``conf`` into the running MONAI Label server.

    Returns the policy, or None outside a ``monailabel start_server`` process (the CLI, tests). Raises
    :class:`InputError` for bad conf values, and where the server is not MONAI Label's ``monailabel.app:app``
    or its stack cannot be rebuilt (then nothing would guard it, so it must not start).
    """
    policy = policy_from_conf(conf, queue_size)
    module = sys.modules.get("monailabel.app")
    if module is None:
        if "start_server" in sys.argv:
            raise InputError("this app guards MONAI Label's own server only (monailabel.app:app); drop --uvicorn_app.")
        return None
    app = module.app
    try:
        kept = [m for m in app.user_middleware if m.cls is not CORSMiddleware and not _is_guard(m.cls)]
        app.user_middleware = [
            Middleware(
                CORSMiddleware,
                allow_origins=list(policy.cors_origins),
                allow_credentials=False,
                allow_methods=["*"],
                allow_headers=["*"],
            ),
            Middleware(HttpGuard, policy=policy),
            *kept,
        ]
        app.exception_handlers[RequestValidationError] = _validation_error  # 400, one line (was 422, a list)
        app.middleware_stack = app.build_middleware_stack()
        chain = _chain(app.middleware_stack)
    except Exception as e:  # noqa: BLE001 - an unguarded server must not start
        raise InputError(f"cannot install the app's HTTP rules in this MONAI Label server ({type(e).__name__}: {e}).")
    cors = [m for m in chain if isinstance(m, CORSMiddleware)]
    guards = [m for m in chain if _is_guard(type(m))]
    if len(cors) != 1 or cors[0].allow_all_origins or cors[0].allow_credentials or len(guards) != 1:
        raise InputError("cannot install the app's HTTP rules in this MONAI Label server (unexpected middleware).")
    logger.info(
        f"HTTP rules: admin endpoints {'on' if policy.allow_admin else 'off'}; CORS origins: "
        f"{', '.join(policy.cors_origins) or 'none'} (MONAI Label's 'Allow Origins' line above no longer applies); "
        f"Host header: {'loopback names only' if policy.loopback_host else 'any'}; inference queue: "
        f"{policy.queue_size} request(s) per model, then 503"
    )
    return policy
