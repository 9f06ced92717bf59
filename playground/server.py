"""A Cohere-compatible HTTP API: ``POST /v1/classify``, ``GET /v1/models``, ``GET /health``.

Code written for Cohere's Classify endpoint keeps working when pointed here, the official
``cohere`` SDK included: the request and response follow Cohere's v1 shapes and errors come
back as ``{"message": ...}`` with Cohere's status codes and wording (from
``playground.validation``), never FastAPI's 422 shape. The work is the same
``playground.engine.classify`` the page and the CLI call.

Start it with ``python -m playground serve [--host 127.0.0.1] [--port 8000]``.

Settings (environment):

- ``CLASSIFY_API_KEY``: when set, every route but ``/health`` needs
  ``Authorization: Bearer <key>``.
- ``CLASSIFY_MAX_BODY_BYTES``: request bodies over this size get 413 before any parsing
  (default 5 MB).
"""

from __future__ import annotations

import ctypes
import hmac
import ipaddress
import logging
import os
import threading
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from pydantic import BaseModel, ConfigDict, Field

from . import __version__
from .embeddings import BASE_MODELS, DEFAULT_PRECISION
from .engine import Classification
from .explain import Explanation, classify
from .store import TrainingBusyError, list_models
from .training import TrainingSettings, train
from .validation import Example, ValidationError

log = logging.getLogger("playground.server")

API_KEY_ENV = "CLASSIFY_API_KEY"
MAX_BODY_ENV = "CLASSIFY_MAX_BODY_BYTES"
DEFAULT_MAX_BODY_BYTES = 5 * 1024 * 1024
DISCARD_LIMIT_BYTES = 64 * 1024 * 1024
"""A refused body up to this size is read and dropped so the client gets the 413; past it, the socket is closed."""
M_ARENA_MAX = -8
"""glibc's mallopt parameter number for the arena limit (malloc.h)."""
OPEN_PATHS = frozenset({"/health"})
"""Routes that answer without the API key (liveness probes carry no secrets)."""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


# --- request and response models (Cohere's v1 shapes) ---------------------------------------


class ClassifyExample(BaseModel):
    """One labelled example, as Cohere's SDK sends it."""

    text: str
    label: str


class ClassifyRequest(BaseModel):
    """Cohere's v1 classify request; unknown fields are ignored, ``preset`` is accepted and unused."""

    model_config = ConfigDict(extra="ignore")

    inputs: list[str] = Field(description="1 to 96 non-empty texts to classify.")
    examples: list[ClassifyExample] | None = Field(
        default=None, description="At least 2 examples for each of at least 2 labels, at most 2,500; "
                                  "leave out for a custom model.")
    model: str | None = Field(default="small", description="small, large or a custom model name.")
    truncate: str | None = Field(default="END", description="NONE, START or END (default END), as Cohere's; "
                                 "WINDOWS is an extension: a text over the window is read whole, in windows.")
    preset: str | None = Field(default=None, description="Accepted for compatibility and ignored.")
    label_names: bool | None = Field(
        default=None, description="An extension (not Cohere's): use the label names as a prior, weighted out of fold "
                                  "on the examples. Left out, the request behaves exactly as Cohere's.")
    descriptions: dict[str, str] | None = Field(
        default=None, description="An extension: a few words per label, used with label_names.")
    unknown_below: float | None = Field(
        default=None, description="An extension (not Cohere's): single-label answers whose confidence is below this "
                                  "(0 to 1) get prediction \"unknown\"; labels keep every confidence. Left out, the "
                                  "response is exactly Cohere's.")
    explain: bool = Field(
        default=False, description="An extension (not Cohere's): each classification gets an explanation: word "
                                   "weights (+ toward the label, - away) and the 3 nearest examples. Costs a few "
                                   "times a plain request. Left out, the response is exactly Cohere's.")


class TuneRequest(BaseModel):
    """An extension of Cohere's API: tune a custom model on examples and save it by name.

    The saved model is then used like any custom model: ``POST /v1/classify`` with ``model`` = ``name``.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="The new model's name: letters, digits, - and _; must not exist yet.")
    examples: list[ClassifyExample] = Field(description="At least 2 examples for each of at least 2 labels.")
    model: Literal["small", "large"] = Field(default="small", description="The base model to tune.")
    descriptions: dict[str, str] | None = Field(
        default=None, description="Optional: a few words per label, used with the label names while tuning.")
    steps: int | None = Field(default=None, description="Tuning steps (default: the recipe's 40; the same examples "
                                                        "give the same model).")
    time_budget_s: float | None = Field(default=None, description="Optional cap in seconds on tuning once (the step "
                                                                "count then follows the machine's speed).")
    cv_folds: int | None = Field(default=None, description=f"Folds for the honest scores (default "
                                                           f"{TrainingSettings.cv_folds}; 0 = none).")
    keep: Literal["best", "tuned"] | None = Field(
        default=None, description="best (default): when the honest scores say tuning made it worse, the untuned "
                                  "model is saved under the name, and when they tie, a blend of the two "
                                  "(metrics.guard says so, with both scores); tuned: keep the tuned one anyway.")
    long_texts: Literal["END", "WINDOWS"] | None = Field(
        default=None, description="Examples over the model's window: END (default) cut; WINDOWS read whole, in windows, "
                                  "for the head and the scores (classify such a model with truncate WINDOWS).")


class LabelConfidence(BaseModel):
    confidence: float


class WordWeightOut(BaseModel):
    word: str
    start: int = Field(description="Character offset of the word in the input.")
    end: int
    weight: float = Field(description="Fall in the label's log-odds without the word: + toward it, - away, 0 unread.")


class NeighbourOut(BaseModel):
    text: str
    label: str
    similarity: float = Field(description="Cosine similarity to the input.")


class ExplanationOut(BaseModel):
    """Why an answer (``explain: true`` only): ``playground.explain.Explanation``'s fields."""

    label: str = Field(description="The label explained: the prediction, or the top label when there is none.")
    words: list[WordWeightOut]
    nearest: list[NeighbourOut] = Field(description="The 3 nearest examples; empty for custom models (they keep "
                                                    "no examples).")
    truncated: bool = Field(description="Whether the model read only part of the text (note says where).")
    note: str
    other_labels: dict[str, list[WordWeightOut]] = Field(
        description="Multi-label answers with several labels: the words' weights toward each other label.")


class ClassificationOut(BaseModel):
    id: str
    input: str
    prediction: str | None = Field(description="The top label; null for multi-label models.")
    predictions: list[str]
    confidence: float | None = Field(description="The top label's confidence; null for multi-label models.")
    confidences: list[float] = Field(description="The confidence of each of ``predictions``, in order.")
    labels: dict[str, LabelConfidence]
    classification_type: Literal["single-label", "multi-label"]
    explanation: ExplanationOut | None = Field(
        default=None, exclude_if=lambda value: value is None,
        description="Only with explain: true (an extension); absent otherwise.")


class ApiVersion(BaseModel):
    version: str = "1"


class Meta(BaseModel):
    api_version: ApiVersion = ApiVersion()


class ClassifyResponse(BaseModel):
    id: str
    classifications: list[ClassificationOut]
    meta: Meta = Meta()


class ModelEntry(BaseModel):
    """One servable model; custom models add the store's fields (status, base model, …)."""

    model_config = ConfigDict(extra="allow")

    name: str
    type: str = Field(description="base (few-shot: send examples) or the custom model's type.")
    labels: list[str] = Field(description="The custom model's labels; empty for base models.")
    endpoints: list[str] = ["classify"]


class ModelsResponse(BaseModel):
    models: list[ModelEntry]


class Health(BaseModel):
    status: Literal["ok", "loading", "error"] = "ok"
    version: str = __version__
    detail: str | None = None


class WarmUp:
    """Where the start-up load stands: ``loading`` until the small model has answered once, then
    ``ok`` (or ``error`` with the reason). The server listens meanwhile: ``/health`` says which, and a
    request that arrives early waits on the encoder being loaded instead of failing."""

    def __init__(self, status: Literal["ok", "loading", "error"] = "loading") -> None:
        self.status = status
        self.detail: str | None = None

    def run(self, load: Callable[[], Any]) -> None:
        try:
            load()
        except Exception as exc:  # noqa: BLE001 - any failure to load is reported on /health and logged
            log.exception("the model could not be loaded at start-up")
            self.status, self.detail = "error", f"the small model could not be loaded: {exc}"
        else:
            self.status = "ok"


class ErrorResponse(BaseModel):
    message: str


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Bad request: the message says what to fix."},
    401: {"model": ErrorResponse, "description": "Missing or wrong API key (when CLASSIFY_API_KEY is set)."},
    404: {"model": ErrorResponse, "description": "Unknown model."},
    413: {"model": ErrorResponse, "description": "Request body over the size limit."},
}


# --- conversions ----------------------------------------------------------------------------


def to_cohere(result: Classification) -> ClassificationOut:
    """A ``Classification`` in Cohere's v1 shape (``prediction``/``confidence`` only for single-label)."""
    single = result.classification_type == "single-label"
    predictions = list(result.predictions) if result.predictions else ([result.prediction] if single else [])
    return ClassificationOut(
        id=str(uuid.uuid4()),
        input=result.input,
        prediction=result.prediction if single else None,
        predictions=predictions,
        confidence=result.confidence if single else None,
        confidences=[result.labels.get(label, result.confidence) for label in predictions],
        labels={label: LabelConfidence(confidence=p) for label, p in result.labels.items()},
        classification_type=result.classification_type,
        explanation=explanation_out(result.explanation) if result.explanation is not None else None,
    )


def explanation_out(explanation: Explanation) -> ExplanationOut:
    return ExplanationOut.model_validate(explanation.to_dict())


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status, headers=headers)


def _where(loc: tuple[Any, ...]) -> str:
    """``("body", "examples", 2, "label")`` → ``examples[2].label``."""
    out = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_TYPE_NAMES = {type(None): "null", bool: "a boolean", int: "a number", float: "a number", str: "a string",
               list: "a list", dict: "an object"}


def validation_message(errors: list[dict[str, Any]]) -> str:
    """Pydantic's errors as one line a person can act on, naming every field at once."""
    problems: list[str] = []
    for err in errors:
        kind, where = err.get("type", ""), _where(tuple(err.get("loc", ())))
        got = _TYPE_NAMES.get(type(err.get("input")), type(err.get("input")).__name__)
        if kind == "json_invalid":
            problems.append(f"the body is not valid JSON ({err.get('ctx', {}).get('error', 'parse error')}); "
                            "send a JSON object such as {\"inputs\": [...], \"examples\": [...]}")
        elif kind == "missing" and not where:
            problems.append("the body is empty: send a JSON object with inputs and examples")
        elif kind == "missing":
            problems.append(f"{where} is required")
        elif kind in ("model_attributes_type", "model_type", "dict_type") and isinstance(err.get("input"), bytes):
            problems.append("the body must be JSON sent with the header Content-Type: application/json")
        elif kind in ("model_attributes_type", "model_type", "dict_type") and not where:
            problems.append(f"the body must be a JSON object with inputs and examples, got {got}")
        elif kind in ("model_attributes_type", "model_type", "dict_type"):
            problems.append(f"{where} must be an object with text and label, got {got}")
        elif kind == "string_type":
            problems.append(f"{where} must be a string, got {got}")
        elif kind == "list_type":
            problems.append(f"{where} must be a list, got {got}")
        else:
            problems.append(f"{where or 'the body'}: {err.get('msg', 'invalid value')}")
    return "invalid request: " + "; ".join(problems)


# --- the ASGI guard: auth, then body size, before FastAPI parses anything --------------------


class Guard:
    """Checks the API key and caps the body size ahead of routing and parsing.

    The body is read here, at most ``max_body_bytes`` of it, and replayed to the app; a body
    over the cap (by ``Content-Length`` or by counting a chunked stream) gets 413 at once.
    """

    def __init__(self, app: ASGIApp, *, api_key: str | None, max_body_bytes: int) -> None:
        self.app = app
        self.api_key = api_key.encode() if api_key else None
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        if self.api_key is not None and scope["path"] not in OPEN_PATHS and not self._authorized(scope):
            if length is None or length.isdigit():  # a stranger's body is drained only up to the normal limit
                await self._discard_body(receive, int(length) if length else None, cap=self.max_body_bytes)
            await _error(401, f"invalid api token: send the header Authorization: Bearer <key> "
                              f"with the key in {API_KEY_ENV}",
                         {"WWW-Authenticate": "Bearer"})(scope, receive, send)
            return
        too_big = _error(413, f"request body too large: at most {self.max_body_bytes} bytes "
                              f"(set {MAX_BODY_ENV} to change the limit); send fewer or shorter texts")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            if not length.isdigit():
                await _error(400, f"invalid Content-Length header: {length[:40]!r}")(scope, receive, send)
            else:
                await self._discard_body(receive, int(length))
                await too_big(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # client went away
                return
            chunk = message.get("body", b"")
            more = message.get("more_body", False)
            size += len(chunk)
            if size > self.max_body_bytes:
                if more:
                    await self._discard_body(receive, None)
                await too_big(scope, receive, send)
                return
            chunks.append(chunk)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _discard_body(self, receive: Receive, length: int | None, cap: int = DISCARD_LIMIT_BYTES) -> None:
        """Read and drop the rest of a refused body, up to ``cap`` bytes.

        A server that answers while the client is still sending closes a socket with unread
        data, and the client sees a connection reset instead of the 413; reading the bytes
        (without keeping them) lets ordinary clients get the message. Past the cap the
        connection is dropped anyway.
        """
        if length is not None and length > cap:
            return
        discarded = 0
        while discarded <= cap:
            message = await receive()
            if message["type"] != "http.request":
                return
            discarded += len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    def _authorized(self, scope: Scope) -> bool:
        header = _header(scope, b"authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(token.strip().encode(), self.api_key or b"")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


# --- the app ----------------------------------------------------------------------------------


def _settings_from_env() -> tuple[str | None, int]:
    api_key = os.environ.get(API_KEY_ENV) or None
    raw = os.environ.get(MAX_BODY_ENV, "").strip()
    if not raw:
        return api_key, DEFAULT_MAX_BODY_BYTES
    if not raw.isdigit() or int(raw) <= 0:
        raise ValueError(f"{MAX_BODY_ENV} must be a positive number of bytes. But it was: {raw!r}")
    return api_key, int(raw)


def _custom_models() -> list[ModelEntry]:
    entries = []
    for info in list_models():
        data = {k: v for k, v in info.to_dict().items() if k not in ("name", "type", "labels")}
        entries.append(ModelEntry(name=info.name, type=info.type, labels=list(info.labels), **data))
    return entries


def create_app(*, api_key: str | None = None, max_body_bytes: int | None = None, preload: bool = True,
               precision: str = DEFAULT_PRECISION) -> FastAPI:
    """The API, configured from the arguments or else from the environment.

    ``preload`` loads the small model in the background at start-up, so the first request is not
    the slow one; ``/health`` says ``loading`` until the server can classify (an early request waits). ``precision`` is the encoders'
    for every request (``auto``: ``$CLASSIFY_PRECISION``, else bf16 where the CPU has it).
    """
    env_key, env_max = _settings_from_env()
    api_key = env_key if api_key is None else (api_key or None)  # "" turns auth off whatever the env says
    max_body_bytes = max_body_bytes if max_body_bytes is not None else env_max

    warm_up = WarmUp("loading" if preload else "ok")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if preload:  # in the background: /health answers "loading" while the model is read
            threading.Thread(target=warm_up.run, args=(lambda: _warm_up(precision),), name="warm-up",
                             daemon=True).start()
        yield

    app = FastAPI(
        title="Classify Playground API",
        version=__version__,
        description="Cohere-compatible text classification (v1 classify), served offline.",
        lifespan=lifespan,
        responses=ERROR_RESPONSES,
    )
    app.state.api_key_required = api_key is not None
    app.state.max_body_bytes = max_body_bytes

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(400, validation_message(list(exc.errors())))

    @app.exception_handler(ValidationError)
    async def _invalid(request: Request, exc: ValidationError) -> JSONResponse:
        return _error(400, str(exc))

    @app.exception_handler(LookupError)
    async def _unknown_model(request: Request, exc: LookupError) -> JSONResponse:
        if isinstance(exc, (KeyError, IndexError)):  # a bug, not an unknown model
            return await _internal(request, exc)
        message = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
        return _error(404, message)

    @app.exception_handler(404)
    async def _not_found(request: Request, exc: Exception) -> JSONResponse:
        return _error(404, f"no route {request.method} {request.url.path}: "
                           "the API has POST /v1/classify, POST /v1/tune, GET /v1/models and GET /health")

    @app.exception_handler(405)
    async def _wrong_method(request: Request, exc: Exception) -> JSONResponse:
        return _error(405, f"{request.method} is not allowed on {request.url.path}")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Any other HTTP error FastAPI raises (a body that is not UTF-8 …) in the ``{"message"}`` shape."""
        message = str(exc.detail)
        if exc.status_code == 400 and "parsing the body" in message:
            message = ("invalid request: the body could not be read as UTF-8 JSON; send a JSON object such as "
                       "{\"inputs\": [...], \"examples\": [...]} encoded as UTF-8")
        return _error(exc.status_code, message, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _error(500, f"internal error ({type(exc).__name__}); the server log has the details")

    @app.get("/health", response_model=Health, response_model_exclude_none=True, tags=["meta"],
             responses={503: {"model": Health, "description": "The model could not be loaded at start-up."}})
    def health() -> Health | JSONResponse:
        """Liveness, without the API key: ``ok``, ``loading`` while the model warms up (requests wait), or
        ``error`` (503) with the reason the model could not be loaded."""
        state = Health(status=warm_up.status, detail=warm_up.detail)
        if state.status == "error":
            return JSONResponse(status_code=503, content=state.model_dump(exclude_none=True))
        return state

    @app.get("/v1/models", response_model=ModelsResponse, tags=["models"])
    def models() -> ModelsResponse:
        """The base models (few-shot: send examples) and the saved custom models."""
        base = [ModelEntry(name=name, type="base", labels=[], description=info.title)
                for name, info in BASE_MODELS.items()]
        return ModelsResponse(models=base + _custom_models())

    @app.post("/v1/tune", response_model=ModelEntry, status_code=201, tags=["models"],
              responses={409: {"model": ErrorResponse, "description": "Another training is running: try again after it."}})
    def tune_endpoint(request: TuneRequest) -> ModelEntry | JSONResponse:
        """Tune a custom model on the examples and save it (an extension; blocks until saved, 409 while another runs)."""
        overrides = {k: v for k, v in (("steps", request.steps), ("time_budget_s", request.time_budget_s),
                                       ("cv_folds", request.cv_folds), ("keep", request.keep),
                                       ("long_texts", request.long_texts)) if v is not None}
        try:
            settings = TrainingSettings(**overrides)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None
        try:
            info = train([Example(ex.text, ex.label) for ex in request.examples], request.name,
                         base_model=request.model, settings=settings, descriptions=request.descriptions)
        except TrainingBusyError as exc:
            return _error(409, str(exc))
        data = {k: v for k, v in info.to_dict().items() if k not in ("name", "type", "labels")}
        return ModelEntry(name=info.name, type=info.type, labels=list(info.labels), **data)

    @app.post("/v1/classify", response_model=ClassifyResponse, tags=["classify"])
    def classify_endpoint(request: ClassifyRequest) -> ClassifyResponse:
        """Cohere's v1 classify. A plain ``def``: FastAPI runs it in its thread pool, off the event loop."""
        model = request.model or "small"
        examples = [Example(ex.text, ex.label) for ex in request.examples] if request.examples is not None else None
        if model not in BASE_MODELS:
            _require_custom_model(model, check_name=examples is not None)
            if examples:
                raise ValidationError(
                    f"model {model!r} is a custom model and takes no examples: leave examples out, "
                    f"or use model small or large to classify from examples"
                )
            examples = None
        results = classify(request.inputs, examples, model, truncate=request.truncate or "END", precision=precision,
                           label_names=bool(request.label_names), descriptions=request.descriptions,
                           unknown_below=request.unknown_below, explain=request.explain)
        return ClassifyResponse(id=str(uuid.uuid4()), classifications=[to_cohere(r) for r in results])

    app.add_middleware(Guard, api_key=api_key, max_body_bytes=max_body_bytes)
    return app


def _require_custom_model(name: str, *, check_name: bool) -> None:
    """404 for a name that is neither a base model nor a saved custom model.

    Without examples the store's own ``UnknownModelError`` (a ``LookupError``) gives the 404,
    so the listing is read only when examples came along and would otherwise be the complaint.
    """
    if check_name and name not in {entry.name for entry in _custom_models()}:
        raise LookupError(f"model {name!r} not found: use small, large or a custom model listed by GET /v1/models")


WARM_UP_EXAMPLES = [Example("good", "a"), Example("great", "a"), Example("bad", "b"), Example("awful", "b")]


def _warm_up(precision: str = DEFAULT_PRECISION) -> None:
    """One tiny request through the engine: loads the small encoder exactly as requests will use it."""
    classify(["warm up"], WARM_UP_EXAMPLES, "small", precision=precision)


def bind_warning(host: str, api_key: str | None) -> str | None:
    """The warning for a server reachable from other machines without a key, else ``None``."""
    if api_key:
        return None
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return None
    return (f"listening on {host} without an API key: anyone who can reach this port can use the API. "
            f"Set {API_KEY_ENV} to require Authorization: Bearer <key>, or bind to 127.0.0.1")


MALLOC_ARENAS = 2
"""glibc malloc arenas for the serving process (``MALLOC_ARENA_MAX`` in the environment wins)."""


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas before the request threads start; True when it was applied.

    Each thread that allocates gets its own arena (up to 8 per core), and each keeps the memory its
    requests freed: the thread pool's arenas were most of the server's growth under load
    (docs/BENCHMARKS.md). ``MALLOC_ARENA_MAX`` is read only when a process starts, so the server sets
    the same limit with ``mallopt`` instead. Not glibc (musl, macOS): nothing to do.
    """
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(M_ARENA_MAX, arenas))


def serve(host: str = "127.0.0.1", port: int = 8000, *, precision: str = DEFAULT_PRECISION) -> None:
    """Run the API with uvicorn (one process; requests share one encoder per model)."""
    import uvicorn  # only when serving: tests build the app without it

    limit_malloc_arenas()

    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    app = create_app(precision=precision)
    warning = bind_warning(host, os.environ.get(API_KEY_ENV))
    if warning:
        log.warning(warning)
    uvicorn.run(app, host=host, port=port, log_level="info")
