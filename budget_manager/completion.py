"""``completion()``: an OpenAI-compatible chat call under the global spend cap."""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Literal, overload

from . import costs, tokens
from .costs.usage import Usage
from .errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    BudgetExceededError,
    InvalidInputError,
    MalformedResponseError,
    MissingUsageError,
)
from .money import ZERO, add, to_money
from .response import ModelResponse
from .stream import CompletionStream

DEFAULT_API_BASE = "https://api.openai.com/v1"
DEFAULT_TIMEOUT = 60.0
_CLIENT_OPTIONS = ("api_base", "base_url", "api_key", "timeout", "extra_headers", "headers")


class _GlobalSpend:
    """The exact running total behind the package's ``_current_cost`` float, and (with
    ``budget_manager.strict``) what calls in flight hold against ``max_budget``."""

    def __init__(self) -> None:
        self.total = ZERO
        self.held = ZERO
        self.published = 0.0
        self.lock = threading.Lock()

    def _package(self) -> Any:
        return sys.modules[__package__]

    def _sync(self, package: Any) -> None:
        # A caller may assign budget_manager._current_cost (e.g. to 0); honour it.
        shown = package._current_cost
        if shown != self.published:
            self.total = to_money(shown, "budget_manager._current_cost")
            self.published = float(self.total)

    def admit(
        self, model: str, messages: Sequence[Mapping[str, Any]], max_tokens: object
    ) -> Decimal:
        """Let a call go out under ``max_budget``, or raise BudgetExceededError; what it holds.

        By default (the seed's rule) a call is refused once the spend so far exceeds the cap.
        With ``budget_manager.strict``, the call's worst case is held first: spend plus what
        calls in flight hold plus this one must fit.
        """
        package = self._package()
        cap = package.max_budget
        if cap is None:
            return ZERO
        limit = to_money(cap, "budget_manager.max_budget")  # InvalidBudgetError, not TypeError
        worst = _worst(model, messages, max_tokens) if package.strict else None
        with self.lock:
            self._sync(package)
            if worst is None:
                if self.total > limit:
                    raise BudgetExceededError(current_cost=package._current_cost, max_budget=cap)
                return ZERO
            if self.total + self.held + worst > limit:
                raise BudgetExceededError(
                    float(self.total + self.held + worst),
                    cap,
                    f"Budget would be exceeded: spent {self.total}, held by calls in flight "
                    f"{self.held}, this call's worst case {worst}, max budget {cap}",
                )
            self.held += worst
            return worst

    def settle(self, held: Decimal, amount: Decimal) -> None:
        """Free what a call held and add what it cost."""
        package = self._package()
        with self.lock:
            self._sync(package)
            self.held = max(ZERO, self.held - held)
            self.total = add(self.total, amount)
            self.published = float(self.total)
            package._current_cost = self.published

    def release(self, held: Decimal) -> None:
        """Free what a call that failed held."""
        if held:
            with self.lock:
                self.held = max(ZERO, self.held - held)


def _worst(model: str, messages: Sequence[Mapping[str, Any]], max_tokens: object) -> Decimal:
    from .costs.worst_case import worst_case

    worst = worst_case(model, messages)
    if max_tokens is None:
        max_tokens = worst.max_output_tokens
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise InvalidInputError(
            f"budget_manager.strict needs max_tokens= (whole number >= 1) to hold the worst case "
            f"of {model!r}, got {max_tokens!r}"
        )
    return worst.cost(max_tokens)


GLOBAL_SPEND = _GlobalSpend()


@overload
def completion(
    model: str, messages: Sequence[Mapping[str, Any]], *, stream: Literal[True], **kwargs: Any
) -> CompletionStream: ...
@overload
def completion(
    model: str,
    messages: Sequence[Mapping[str, Any]],
    *,
    stream: Literal[False] = ...,
    **kwargs: Any,
) -> ModelResponse: ...
@overload
def completion(
    model: str, messages: Sequence[Mapping[str, Any]], *, stream: bool, **kwargs: Any
) -> ModelResponse | CompletionStream: ...
def completion(
    model: str, messages: Sequence[Mapping[str, Any]], **kwargs: Any
) -> ModelResponse | CompletionStream:
    """Send a chat completion to an OpenAI-compatible endpoint, within ``max_budget``.

    The endpoint is ``api_base`` (or ``base_url``), else ``OPENAI_BASE_URL`` / ``OPENAI_API_BASE``,
    else OpenAI's; the key ``api_key``, else ``OPENAI_API_KEY``. Other keyword arguments go into
    the request body. The call is refused (BudgetExceededError) when the spend so far exceeds
    ``budget_manager.max_budget``, and its cost is added to ``budget_manager._current_cost``.

    With ``stream=True`` it returns an iterator of chunks (usage is requested from the endpoint);
    the call's cost is added once the stream is consumed or closed, from the usage the last chunk
    reports, else from the tokens of the prompt and of the text received.
    """
    return send(model, messages, kwargs)


def send(
    model: str,
    messages: Sequence[Mapping[str, Any]],
    kwargs: dict[str, Any],
    on_cost: Callable[[costs.Priced], None] | None = None,
    priced: bool = True,
) -> ModelResponse | CompletionStream:
    """:func:`completion`, also handing each call priced to ``on_cost`` (a budget's settle).
    ``priced=False`` lets a model with no price go out (its cost counts as 0)."""
    call = Outgoing.admit(model, messages, kwargs, priced)
    try:
        if call.stream:
            reply = _send(call)
            return CompletionStream(reply, model, call.messages, call.charger(on_cost), priced)
        data = _post(call)
    except BaseException:
        call.release()
        raise
    response = call.response(data)
    call.charger(on_cost)(call.cost_of(response))
    return response


class Outgoing:
    """One chat call admitted under ``max_budget``: what to send where, and how its cost is
    counted (shared by :func:`completion` and :func:`~budget_manager.acompletion`)."""

    def __init__(
        self,
        model: str,
        messages: list[Mapping[str, Any]],
        kwargs: dict[str, Any],
        priced: bool,
        held: Decimal,
    ) -> None:
        self.model = model
        self.messages = messages
        self.priced = priced
        self.held = held
        kwargs = dict(kwargs)
        client = {k: kwargs.pop(k) for k in _CLIENT_OPTIONS if k in kwargs}
        self.stream = bool(kwargs.get("stream"))
        self.body = {"model": model, "messages": messages, **kwargs}
        if self.stream:
            self.body.setdefault("stream_options", {"include_usage": True})
        base = (
            client.get("api_base")
            or client.get("base_url")
            or os.environ.get("OPENAI_BASE_URL")
            or os.environ.get("OPENAI_API_BASE")
            or DEFAULT_API_BASE
        )
        self.url = base.rstrip("/") + "/chat/completions"
        self.headers = {"Content-Type": "application/json"}
        key = client.get("api_key") or os.environ.get("OPENAI_API_KEY")
        if key:
            self.headers["Authorization"] = f"Bearer {key}"
        self.headers.update(client.get("headers") or {})
        self.headers.update(client.get("extra_headers") or {})
        self.timeout = client.get("timeout", DEFAULT_TIMEOUT)

    @classmethod
    def admit(
        cls,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        kwargs: dict[str, Any],
        priced: bool = True,
    ) -> Outgoing:
        """Check the request and let it go out under ``max_budget`` (BudgetExceededError if it
        may not)."""
        _check_request(model, messages)
        if priced:
            costs.require_price(model)  # a call whose cost could not be accounted for is not sent
        held = GLOBAL_SPEND.admit(model, messages, kwargs.get("max_tokens"))
        return cls(model, list(messages), kwargs, priced, held)

    def charger(
        self, on_cost: Callable[[costs.Priced], Any] | None
    ) -> Callable[[costs.Priced], Any]:
        """What records the call priced: its cost in the global total, then the whole handed to
        ``on_cost``."""

        def charge(priced: costs.Priced) -> Any:
            GLOBAL_SPEND.settle(self.held, priced.cost)
            return on_cost(priced) if on_cost is not None else None

        return charge

    def release(self) -> None:
        """Free what the call held against ``max_budget`` (it failed)."""
        GLOBAL_SPEND.release(self.held)

    def response(self, data: Any) -> ModelResponse:
        """The response object of a JSON answer (checked), with usage counted if it has none."""
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            raise MalformedResponseError(
                f"{self.url} answered without a list of choices: {str(data)[:200]}"
            )
        response = ModelResponse(data)
        if response.get("usage") is None:
            response.usage = _counted_usage(self.model, self.messages, response)
        return response

    def cost_of(self, response: ModelResponse) -> costs.Priced:
        if not self.priced:
            return costs.Priced(self.model, ZERO, Usage())
        return costs.price_response(response, default_model=self.model)

    def refusal(self, status: int, text: str, error: Any) -> APIError:
        """The error for an answer with a failing status."""
        return APIError(
            f"{self.url} answered {status}: {_error_text(error, text)}",
            status_code=status,
            body=text,
        )

    def not_json(self, status: int, text: str) -> MalformedResponseError:
        return MalformedResponseError(
            f"{self.url} answered {status} with a body that is not JSON: {text[:200]!r}",
            status_code=status,
            body=text,
        )


def _check_request(model: object, messages: object) -> None:
    if not isinstance(model, str) or not model:
        raise InvalidInputError(f"model must be a non-empty string, got {model!r}")
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise InvalidInputError("messages must be a list of {'role': ..., 'content': ...} dicts")
    for message in messages:
        if not isinstance(message, Mapping) or "role" not in message:
            raise InvalidInputError(f"each message needs a role, got {message!r}")


def _send(call: Outgoing) -> Any:
    """POST the request; the reply once it has answered with a success status."""
    import requests

    try:
        reply = requests.post(
            call.url, json=call.body, headers=call.headers, timeout=call.timeout, stream=call.stream
        )
    except requests.Timeout as exc:
        raise APITimeoutError(f"{call.url} did not answer within {call.timeout} s") from exc
    except requests.RequestException as exc:
        raise APIConnectionError(f"cannot reach {call.url}: {exc}") from exc
    if reply.status_code >= 400:
        raise call.refusal(
            reply.status_code, reply.text or reply.reason or "", json_body(reply.text)
        )
    return reply


def _post(call: Outgoing) -> Any:
    reply = _send(call)
    try:
        return reply.json()
    except ValueError:
        raise call.not_json(reply.status_code, reply.text) from None


def json_body(text: str) -> Any:
    """``text`` read as JSON, or None."""
    try:
        return json.loads(text)
    except ValueError:
        return None


def _error_text(data: Any, text: str) -> str:
    """What a failing answer says went wrong."""
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    if error:
        return str(error)
    return text[:300] or "no body"


def _counted_usage(
    model: str, messages: Sequence[Mapping[str, Any]], response: ModelResponse
) -> dict[str, int]:
    """Usage counted with the tokenizer, for endpoints that report none."""
    text = ""
    for choice in response.get("choices") or []:
        message = choice.get("message") if isinstance(choice, Mapping) else None
        if isinstance(message, Mapping) and isinstance(message.get("content"), str):
            text += message["content"]
    try:
        prompt = tokens.count_messages(model, messages)
    except TypeError as exc:
        raise MissingUsageError(f"cannot count the prompt's tokens: {exc}") from exc
    completion_tokens = tokens.count_text(model, text)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt + completion_tokens,
    }
