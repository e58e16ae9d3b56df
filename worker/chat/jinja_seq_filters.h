// The sequence filters of jinja2 (map, select, selectattr, sort, unique,
// join, first, last, ...). Split from jinja_filters.cc, which dispatches to
// them by name; each has the FilterFn shape.
#ifndef TOKENFAB_WORKER_CHAT_JINJA_SEQ_FILTERS_H_
#define TOKENFAB_WORKER_CHAT_JINJA_SEQ_FILTERS_H_

#include "absl/status/statusor.h"
#include "worker/chat/jinja_value.h"

namespace tokenfab::jinja {

using FilterFn = absl::StatusOr<Value> (*)(const Value& input, const CallArgs& args);

absl::StatusOr<Value> FilterMap(const Value& input, const CallArgs& args);
absl::StatusOr<Value> FilterSelect(const Value& input, const CallArgs& args);
absl::StatusOr<Value> FilterReject(const Value& input, const CallArgs& args);
absl::StatusOr<Value> FilterSelectAttr(const Value& input, const CallArgs& args);
absl::StatusOr<Value> FilterRejectAttr(const Value& input, const CallArgs& args);
absl::StatusOr<Value> FilterSort(const Value& input, const CallArgs& args);
absl::StatusOr<Value> FilterDictSort(const Value& input, const CallArgs& args);
absl::StatusOr<Value> FilterUnique(const Value& input, const CallArgs& args);
absl::StatusOr<Value> FilterMin(const Value& input, const CallArgs& args);
absl::StatusOr<Value> FilterMax(const Value& input, const CallArgs& args);
absl::StatusOr<Value> FilterSum(const Value& input, const CallArgs& args);
absl::StatusOr<Value> FilterJoin(const Value& input, const CallArgs& args);
absl::StatusOr<Value> FilterFirst(const Value& input, const CallArgs& args);
absl::StatusOr<Value> FilterLast(const Value& input, const CallArgs& args);
absl::StatusOr<Value> FilterList(const Value& input, const CallArgs& args);
absl::StatusOr<Value> FilterItems(const Value& input, const CallArgs& args);
absl::StatusOr<Value> FilterReverse(const Value& input, const CallArgs& args);

}  // namespace tokenfab::jinja

#endif  // TOKENFAB_WORKER_CHAT_JINJA_SEQ_FILTERS_H_
