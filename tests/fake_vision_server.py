"""A local OpenAI-compatible vision server for the served-answer tests and benchmark: the fake LLM server
(real HTTP, the real ``openai`` SDK on the other side, fault injection) plus ``/v1/models`` and a check of
every chat request, the way vLLM serving LLaVA-OneVision would receive it.

A request is refused with 400 (and the reason kept in ``rejected``) unless:
- it carries the API key, if one was set (401 otherwise), names the served model (404 otherwise) and
  decodes greedily (temperature 0);
- its messages alternate user / assistant, start and end with a user turn, and carry no system message;
- the first user turn holds exactly one image, before the question, as a base64 data URL of a readable
  image or as a ``file://`` URL inside ``media_root`` (``--allowed-local-media-path``); no later turn
  holds one;
- each earlier assistant turn is the answer this server gives to that image and question (the
  conversation's history is the model's own).

Answers are deterministic: ``answers[(image sha256, question)]`` where given (a test hands it the
reference answers: an oracle behind HTTP), else ``"<question> [image <sha256[:8]>]"``. The sha256 and the
transport of every image received are logged in ``images``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

from fake_openai_server import FakeOpenAI, _error
from PIL import Image
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

CHECKED_IMAGE = "_checked_image_sha256"


class RequestRefused(ValueError):
    pass


class FakeVisionServer(FakeOpenAI):
    def __init__(
        self,
        served_model: str,
        root: str = "",
        answers: dict[tuple[str, str], str] | None = None,
        media_root: Path | None = None,
        latency_s: float = 0.0,
        api_key: str | None = None,
    ):
        super().__init__(responder=self._respond, latency_s=latency_s)
        self.served_model, self.root = served_model, root
        self.answers = answers or {}
        self.media_root = media_root.resolve() if media_root else None
        self.api_key = api_key  # as vLLM's --api-key: every request must carry it
        self.images: list[tuple[str, str]] = []  # (sha256, "data" or "file") per request received
        self.rejected: list[str] = []

    def routes(self) -> list[Route]:
        return [*super().routes(), Route("/v1/models", self._models, methods=["GET"])]

    def _key_refused(self, request: Request) -> Response | None:
        if self.api_key and request.headers.get("authorization") != f"Bearer {self.api_key}":
            return _error(401, "Unauthorized")
        return None

    async def _models(self, request: Request) -> Response:
        self.api_calls.append("GET /v1/models")
        if refused := self._key_refused(request):
            return refused
        card = {
            "id": self.served_model,
            "object": "model",
            "created": int(time.time()),
            "owned_by": "vllm",
            "root": self.root,
            "max_model_len": 4096,
        }
        return JSONResponse({"object": "list", "data": [card]})

    async def _chat(self, request: Request) -> Response:
        if refused := self._key_refused(request):
            return refused
        body = await request.json()  # Starlette keeps the body: the parent reads it again
        if body.get("model") != self.served_model:
            self.rejected.append(f"model {body.get('model')}")
            return _error(404, f"The model `{body.get('model')}` does not exist.")
        try:
            self._check(body)
        except RequestRefused as refused:
            self.rejected.append(str(refused))
            return _error(400, str(refused))
        return await super()._chat(request)

    # what a request must look like ------------------------------------------------------------------

    def reply(self, image_sha256: str, question: str) -> str:
        return self.answers.get((image_sha256, question), f"{question} [image {image_sha256[:8]}]")

    def _respond(self, body: dict) -> str:
        last = body["messages"][-1]["content"]
        return self.reply(body[CHECKED_IMAGE], last if isinstance(last, str) else last[1]["text"])

    def _check(self, body: dict) -> None:
        if body.get("temperature") != 0:
            raise RequestRefused(f"temperature {body.get('temperature')}: evaluation decodes greedily")
        messages = body["messages"]
        roles = [message["role"] for message in messages]
        if roles != ["user", "assistant"] * (len(roles) // 2) + ["user"]:
            raise RequestRefused(f"roles {roles}: expected user/assistant turns ending with the user")
        first = messages[0]["content"]
        if not (
            isinstance(first, list)
            and len(first) == 2
            and first[0].get("type") == "image_url"
            and first[1].get("type") == "text"
        ):
            raise RequestRefused("the first user turn must hold one image, then the question")
        if any(not isinstance(message["content"], str) for message in messages[1:]):
            raise RequestRefused("only the first user turn may hold an image")
        sha256, transport = self._image(first[0])
        self.images.append((sha256, transport))
        body[CHECKED_IMAGE] = sha256  # the parent handler reads this same parsed body
        questions = [first[1]["text"]] + [m["content"] for m in messages[2::2]]
        for question, answered in zip(questions, [m["content"] for m in messages[1::2]]):
            if answered != self.reply(sha256, question):
                raise RequestRefused(
                    f"the history's answer to {question!r} is not this model's: {answered!r}"
                )

    def _image(self, part: dict) -> tuple[str, str]:
        """(sha256 of the image's bytes, transport); refused unless the bytes open as an image."""
        url = part["image_url"]["url"]
        if url.startswith("data:"):
            header, _, payload = url.partition(",")
            if not header.endswith(";base64"):
                raise RequestRefused(f"data URL without base64: {header}")
            try:
                data, transport = base64.b64decode(payload, validate=True), "data"
            except binascii.Error as exc:
                raise RequestRefused(f"bad base64: {exc}") from exc
        elif url.startswith("file://"):
            path = Path(unquote(urlparse(url).path)).resolve()
            if self.media_root is None or not path.is_relative_to(self.media_root):
                raise RequestRefused(f"{path} is outside the allowed local media path {self.media_root}")
            data, transport = path.read_bytes(), "file"
        else:
            raise RequestRefused(f"image URL of an unsupported kind: {url[:40]}")
        try:
            with Image.open(io.BytesIO(data)) as image:
                image.verify()
        except Exception as exc:
            raise RequestRefused(f"the image does not open: {exc}") from exc
        return hashlib.sha256(data).hexdigest(), transport
