// The global functions a chat template can call: jinja2's range, dict and
// namespace, and the two Hugging Face adds, raise_exception and strftime_now.
#ifndef TOKENFAB_WORKER_CHAT_JINJA_GLOBALS_H_
#define TOKENFAB_WORKER_CHAT_JINJA_GLOBALS_H_

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "worker/chat/jinja_value.h"

namespace tokenfab::jinja {

using Clock = std::function<std::chrono::system_clock::time_point()>;

// jinja2's sandbox refuses larger ranges.
inline constexpr int64_t kMaxRange = 100000;

// name -> function; `now` feeds strftime_now (local time, as Python's
// datetime.now()); every namespace() created is recorded in `namespaces`.
std::vector<std::pair<std::string, Value>> MakeGlobals(
    Clock now, std::vector<std::weak_ptr<Namespace>>* namespaces);

// True for the error raise_exception() returns: its message is the
// template's own text and carries no interpreter location.
bool IsRaisedByTemplate(const absl::Status& status);

}  // namespace tokenfab::jinja

#endif  // TOKENFAB_WORKER_CHAT_JINJA_GLOBALS_H_
