"""Errors the API answers with, in OpenAI's shape: `{"error": {message, type, param, code}}`."""

from __future__ import annotations

from dscoder.serve.schemas import ErrorDetail, ErrorResponse


class ApiError(Exception):
    """A request the server refuses (4xx) or could not finish (5xx), said in one sentence."""

    def __init__(self, status: int, message: str, *, param: str | None = None,
                 code: str | None = None, type: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type or ("invalid_request_error" if status < 500 else "server_error")

    def body(self) -> ErrorResponse:
        return ErrorResponse(error=ErrorDetail(message=self.message, type=self.type,
                                               param=self.param, code=self.code))


def bad_request(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)
