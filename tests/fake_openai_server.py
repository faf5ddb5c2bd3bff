"""A local OpenAI-compatible server for the LLM-stage tests: real HTTP on 127.0.0.1, so the real ``openai``
SDK is exercised end to end (chat completions, files, batches), with faults injected on demand.

Faults, given per request in arrival order with ``script([...])`` or for every request with
``always(...)``:
- ``"429"``: rate limited, with ``Retry-After`` (seconds, rounded up) and ``retry-after-ms``;
- ``"500"``: server error without a Retry-After;
- ``"401"``: authentication error whose message echoes the key it was given (as real servers may);
  under ``always("401")`` file uploads and batch creation are refused too;
- ``"400"``: the request itself refused (as for a prompt over the context length);
- ``"404"``: the model is unknown;
- ``"timeout"``: answers only after ``timeout_sleep_s`` (longer than the client's timeout);
- ``"truncated"``: the answer cut in half, ``finish_reason="length"``;
- ``"malformed_body"``: HTTP 200 whose body is not valid JSON;
- ``"prose"``: a chatty answer that is not the JSON asked for;
- in a batch only: ``"empty_choices"`` (status 200, no choices), ``"no_custom_id"`` (a line that names no
  request) and ``"not_json"`` (a line cut off mid-object).

Answers come from ``responder(body) -> str``; the default one behaves like an obliging model for the
project's two prompts. Every request is logged (``api_calls``; model requests in ``chat_requests``),
with the peak number of chat requests in flight.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import itertools
import json
import math
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from radvlm_pipeline.boxes import format_box, parse_boxes
from radvlm_pipeline.llm.offline_rules import remove_prior_mentions_by_rules


@dataclass
class ChatRequest:
    started: float  # time.monotonic() when the server received it
    user_message: str
    seed: int | None
    authorization: str
    via: str  # "chat" or "batch"
    fault: str | None
    model: str


def obliging_responder(body: dict) -> str:
    """Prior removal: the rule-based cleaner; conversations: a valid dialogue that cites the given boxes."""
    user = body["messages"][-1]["content"]
    if user.startswith("Report:"):
        report = user.removeprefix("Report:").rsplit("Answer:", 1)[0].strip()
        return remove_prior_mentions_by_rules(report)
    observations = user.split("Observations with boxes:", 1)[-1]
    boxes = parse_boxes(observations)
    turns = [
        (
            "What do you see on this chest X-ray?",
            "The lungs and heart are visible; I describe what the image shows.",
        ),
        ("Is the heart enlarged?", "The heart size does not look clearly enlarged on this image."),
        ("Any fluid around the lungs?", "I do not see a clear pleural effusion."),
        ("Is there a pneumothorax?", "No, I see no pneumothorax."),
        ("Anything else?", "Nothing else stands out."),
    ]
    if boxes:
        turns[-1] = ("Where is the main finding?", f"It is located at {format_box(boxes[0])}.")
    return json.dumps(
        [{"from": who, "value": text} for q, a in turns for who, text in (("human", q), ("gpt", a))]
    )


def _words(content: str | list) -> int:
    """Words of a message's text, whether plain or in content parts (images count for nothing)."""
    if isinstance(content, str):
        return len(content.split())
    return sum(len(part.get("text", "").split()) for part in content)


def _completion(body: dict, text: str, finish_reason: str) -> dict:
    prompt_tokens = sum(_words(m["content"]) for m in body["messages"])
    completion_tokens = len(text.split())
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body["model"],
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason}
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": "fake", "code": str(status)}}, status, headers=headers
    )


class FakeOpenAI:
    def __init__(
        self,
        responder: Callable[[dict], str] = obliging_responder,
        latency_s: float = 0.0,
        retry_after_s: float = 0.2,
        timeout_sleep_s: float = 2.0,
    ):
        self.responder = responder
        self.latency_s = latency_s
        self.retry_after_s = retry_after_s
        self.timeout_sleep_s = timeout_sleep_s
        self.hold_batches = False  # keep batches "in_progress" when polled
        self.chat_requests: list[ChatRequest] = []
        self.api_calls: list[str] = []  # "METHOD /path" of every HTTP request
        self.max_in_flight = 0
        self._in_flight = 0
        self._scripted: deque[str | None] = deque()
        self._always: str | None = None
        self._files: dict[str, bytes] = {}
        self._batches: dict[str, dict] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # control ---------------------------------------------------------------------------------------

    def script(self, faults: list[str | None]) -> None:
        """Faults for the next requests, in arrival order (None = answer normally)."""
        self._scripted.extend(faults)

    def always(self, fault: str | None) -> None:
        self._always = fault

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def requests_for(self, user_message: str) -> list[ChatRequest]:
        return [r for r in self.chat_requests if r.user_message == user_message]

    def _next_fault(self) -> str | None:
        with self._lock:
            return self._scripted.popleft() if self._scripted else self._always

    # HTTP handlers ---------------------------------------------------------------------------------

    async def _chat(self, request: Request) -> Response:
        self.api_calls.append("POST /v1/chat/completions")
        body = await request.json()
        fault = self._next_fault()
        self.chat_requests.append(
            ChatRequest(
                time.monotonic(),
                body["messages"][-1]["content"],
                body.get("seed"),
                request.headers.get("authorization", ""),
                "chat",
                fault,
                body["model"],
            )
        )
        self._in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            await asyncio.sleep(self.timeout_sleep_s if fault == "timeout" else self.latency_s)
            if fault == "429":
                headers = {
                    "retry-after": str(math.ceil(self.retry_after_s)),
                    "retry-after-ms": str(int(self.retry_after_s * 1000)),
                }
                return _error(429, "Rate limit reached, please retry", headers)
            if fault == "500":
                return _error(500, "The server had an error while processing your request")
            if fault == "401":
                return self._unauthorized(request)
            if fault == "400":
                return _error(400, "This model's maximum context length is 128000 tokens.")
            if fault == "404":
                return _error(
                    404, f"The model {body['model']} does not exist or you do not have access to it."
                )
            if fault == "malformed_body":
                return Response(
                    '{"id": "chatcmpl-fake", "choices": [{"message": ', media_type="application/json"
                )
            return JSONResponse(self._answer(body, fault))
        finally:
            self._in_flight -= 1

    @staticmethod
    def _unauthorized(request: Request) -> JSONResponse:
        key = request.headers.get("authorization", "").removeprefix("Bearer ")
        return _error(401, f"Incorrect API key provided: {key}")

    def _answer(self, body: dict, fault: str | None) -> dict:
        if fault == "prose":
            return _completion(body, "Sure! Here is a conversation about the image you described.", "stop")
        text = self.responder(body)
        if fault == "truncated":
            return _completion(body, text[: len(text) // 2], "length")
        return _completion(body, text, "stop")

    async def _upload(self, request: Request) -> Response:
        self.api_calls.append("POST /v1/files")
        if self._always == "401":
            return self._unauthorized(request)
        raw = await request.body()
        header = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
        parts = {
            part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
            for part in email.message_from_bytes(header + raw, policy=email.policy.HTTP).iter_parts()
        }
        file_id = f"file-{next(self._ids)}"
        self._files[file_id] = parts["file"]
        return JSONResponse(self._file_object(file_id, parts["purpose"].decode()))

    def _file_object(self, file_id: str, purpose: str) -> dict:
        return {
            "id": file_id,
            "object": "file",
            "bytes": len(self._files[file_id]),
            "created_at": int(time.time()),
            "filename": f"{file_id}.jsonl",
            "purpose": purpose,
            "status": "processed",
        }

    async def _file_content(self, request: Request) -> Response:
        file_id = request.path_params["file_id"]
        self.api_calls.append(f"GET /v1/files/{file_id}/content")
        return Response(self._files[file_id], media_type="application/octet-stream")

    async def _create_batch(self, request: Request) -> Response:
        self.api_calls.append("POST /v1/batches")
        body = await request.json()
        batch_id = f"batch_{next(self._ids)}"
        self._batches[batch_id] = {
            "id": batch_id,
            "object": "batch",
            "endpoint": body["endpoint"],
            "input_file_id": body["input_file_id"],
            "completion_window": body["completion_window"],
            "status": "validating",
            "created_at": int(time.time()),
            "output_file_id": None,
            "error_file_id": None,
        }
        return JSONResponse(self._batches[batch_id])

    async def _get_batch(self, request: Request) -> Response:
        batch_id = request.path_params["batch_id"]
        self.api_calls.append(f"GET /v1/batches/{batch_id}")
        batch = self._batches[batch_id]
        if batch["status"] != "completed":
            if self.hold_batches:
                batch["status"] = "in_progress"
            else:
                self._run_batch(batch)
        return JSONResponse(batch)

    def _run_batch(self, batch: dict) -> None:
        """Answer each line; a line whose scripted fault is 500 lands in the error file, like OpenAI's."""
        output, errors = [], []
        for line in self._files[batch["input_file_id"]].decode().splitlines():
            request = json.loads(line)
            body = request["body"]
            fault = self._next_fault()
            self.chat_requests.append(
                ChatRequest(
                    time.monotonic(),
                    body["messages"][-1]["content"],
                    body.get("seed"),
                    "",
                    "batch",
                    fault,
                    body["model"],
                )
            )
            if fault == "500":
                errors.append(
                    json.dumps(
                        {
                            "id": "req",
                            "custom_id": request["custom_id"],
                            "error": None,
                            "response": {
                                "status_code": 500,
                                "body": {"error": {"message": "server error", "type": "fake"}},
                            },
                        }
                    )
                )
            else:
                answer = self._answer(body, fault)
                if fault == "empty_choices":
                    answer["choices"] = []
                record = {
                    "id": "req",
                    "custom_id": request["custom_id"],
                    "error": None,
                    "response": {"status_code": 200, "body": answer},
                }
                if fault == "no_custom_id":
                    del record["custom_id"]
                output.append(json.dumps(record)[:40] if fault == "not_json" else json.dumps(record))
        for key, records in (("output_file_id", output), ("error_file_id", errors)):
            if records:
                file_id = f"file-{next(self._ids)}"
                self._files[file_id] = "\n".join(records).encode()
                batch[key] = file_id
        batch["status"] = "completed"

    # lifecycle -------------------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        return [
            Route("/v1/chat/completions", self._chat, methods=["POST"]),
            Route("/v1/files", self._upload, methods=["POST"]),
            Route("/v1/files/{file_id}/content", self._file_content, methods=["GET"]),
            Route("/v1/batches", self._create_batch, methods=["POST"]),
            Route("/v1/batches/{batch_id}", self._get_batch, methods=["GET"]),
        ]

    def __enter__(self) -> FakeOpenAI:
        app = Starlette(routes=self.routes())
        sock = socket.socket()
        sock.bind(("127.0.0.1", self.port))  # 0 unless set: a free port
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1, backlog=512)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        while not self._server.started:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)


_USER_REPORT = re.compile(r"^Report: (.*)\nAnswer:$", re.S)


def report_of(user_message: str) -> str | None:
    """The report text inside a prior-removal user message (to match requests to input rows)."""
    match = _USER_REPORT.match(user_message)
    return match.group(1) if match else None
