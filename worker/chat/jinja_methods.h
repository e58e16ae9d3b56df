// Python methods that templates call on values: str (strip, split, format,
// ...), dict (items, keys, values, get) and list (index, count), as bound
// callables. The sandbox HF uses forbids methods that mutate; those resolve to
// an Undefined that fails when called, as jinja2's ImmutableSandboxedEnvironment
// does. Python methods this interpreter lacks resolve to a callable that
// fails with a clear error, so a template never silently gets an Undefined for
// a real method.
#ifndef TOKENFAB_WORKER_CHAT_JINJA_METHODS_H_
#define TOKENFAB_WORKER_CHAT_JINJA_METHODS_H_

#include <optional>
#include <string_view>

#include "worker/chat/jinja_value.h"

namespace tokenfab::jinja {

// The bound method `obj.name`, or nullopt if the type has no such attribute.
std::optional<Value> LookupMethod(const Value& obj, std::string_view name);

}  // namespace tokenfab::jinja

#endif  // TOKENFAB_WORKER_CHAT_JINJA_METHODS_H_
