// The OpenAI error object and the one mapping from absl::Status to an HTTP
// status and that object, so every face of the HTTP server reports errors the
// same way. Pure functions; any thread.
#ifndef TOKENFAB_SERVER_HTTP_HTTP_ERROR_H_
#define TOKENFAB_SERVER_HTTP_HTTP_ERROR_H_

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"

namespace tokenfab {

struct HttpError {
  int status = 500;           // the HTTP status code
  nlohmann::ordered_json body;  // {"error": {"message", "type", "param", "code"}}
};

// The OpenAI error object; an empty `param` or `code` is written as null.
HttpError MakeHttpError(int http_status, std::string_view type, std::string_view message,
                        std::string_view param = "", std::string_view code = "");

// InvalidArgument, FailedPrecondition, OutOfRange -> 400 invalid_request_error
// (param: the request field the message starts with, when it names one);
// NotFound -> 404; Unauthenticated -> 401 invalid_api_key; ResourceExhausted -> 429 (the caller
// adds Retry-After); Unavailable, Cancelled, Aborted -> 503; DeadlineExceeded -> 504; anything else
// -> 500 server_error.
HttpError HttpErrorFromStatus(const absl::Status& status);

// The request field a message starts with ("temperature must be ...",
// "messages[2].content is ..."), or "" if it starts with none.
std::string ParamFromMessage(std::string_view message);

}  // namespace tokenfab

#endif  // TOKENFAB_SERVER_HTTP_HTTP_ERROR_H_
