#include "worker/chat/jinja_seq_filters.h"

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "worker/chat/jinja_args.h"
#include "worker/chat/jinja_filters.h"
#include "worker/chat/jinja_ops.h"
#include "worker/chat/jinja_tests.h"
#include "worker/chat/jinja_text.h"

namespace tokenfab::jinja {
namespace {

// jinja2's make_attrgetter: a dotted path of item lookups ("a.b.0"), with
// digit parts looked up as integers.
class AttrGetter {
 public:
  // `attribute` None means the item itself.
  static absl::StatusOr<AttrGetter> Create(const Value& attribute, bool ignore_case,
                                           std::optional<Value> fallback = std::nullopt) {
    AttrGetter g;
    g.ignore_case_ = ignore_case;
    g.fallback_ = std::move(fallback);
    if (attribute.is_string()) {
      for (std::string& part : PySplit(attribute.as_string(), ".", -1)) {
        bool digits = !part.empty() && std::all_of(part.begin(), part.end(),
                                                   [](char c) { return c >= '0' && c <= '9'; });
        g.parts_.push_back(digits ? Value::Int(std::stoll(part)) : Value::Str(std::move(part)));
      }
    } else if (!attribute.is_none()) {
      g.parts_.push_back(attribute);
    }
    return g;
  }

  absl::StatusOr<Value> operator()(Value item) const {
    for (const Value& part : parts_) {
      ASSIGN_OR_RETURN(item, GetItem(item, part));
      if (fallback_ && item.is_undefined()) item = *fallback_;
    }
    if (ignore_case_ && item.is_string()) return Value::Str(PyLower(item.as_string()));
    return item;
  }

 private:
  std::vector<Value> parts_;
  bool ignore_case_ = false;
  std::optional<Value> fallback_;
};

Value Generator(std::vector<Value> items) {
  return Value::Seq(std::move(items), SeqKind::kGenerator);
}

CallArgs Rest(const CallArgs& args, size_t skip) {
  CallArgs rest;
  for (size_t i = skip; i < args.positional.size(); ++i)
    rest.positional.push_back(args.positional[i]);
  rest.keyword = args.keyword;
  return rest;
}

absl::StatusOr<Value> SelectOrReject(const Value& input, const CallArgs& args, bool select,
                                     bool lookup_attr) {
  if (!Truthy(input)) return Generator({});
  size_t offset = 0;
  std::optional<AttrGetter> getter;
  if (lookup_attr) {
    if (args.positional.empty()) {
      return absl::InvalidArgumentError("Missing parameter for attribute name");
    }
    ASSIGN_OR_RETURN(getter, AttrGetter::Create(args.positional[0], false));
    offset = 1;
  }
  std::optional<std::string> test;
  if (args.positional.size() > offset) {
    const Value& name = args.positional[offset];
    if (!name.is_string() || GetTestSupport(name.as_string()) != BuiltinSupport::kSupported) {
      ASSIGN_OR_RETURN(std::string shown, PyStr(name));
      return absl::InvalidArgumentError(StrCat("No test named '", shown, "'."));
    }
    test = name.as_string();
  }
  CallArgs test_args = Rest(args, offset + 1);
  ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(input));
  std::vector<Value> out;
  for (Value& item : items) {
    Value probe = item;
    if (getter) {
      ASSIGN_OR_RETURN(probe, (*getter)(item));
    }
    bool passed;
    if (test) {
      ASSIGN_OR_RETURN(passed, ApplyTest(*test, probe, test_args));
    } else {
      passed = Truthy(probe);
    }
    if (passed == select) out.push_back(std::move(item));
  }
  return Generator(std::move(out));
}

// Python's sorted() on precomputed keys; stable, and `reverse` keeps equal
// elements in their original order as Python does.
absl::StatusOr<std::vector<Value>> SortByKeys(std::vector<Value> items,
                                              const std::vector<Value>& keys, bool reverse) {
  std::vector<size_t> order(items.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  absl::Status error;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (!error.ok()) return false;
    absl::StatusOr<bool> less =
        reverse ? CompareOp("<", keys[b], keys[a]) : CompareOp("<", keys[a], keys[b]);
    if (!less.ok()) {
      error = less.status();
      return false;
    }
    return *less;
  });
  RETURN_IF_ERROR(error);
  std::vector<Value> out;
  out.reserve(items.size());
  for (size_t i : order) out.push_back(std::move(items[i]));
  return out;
}

absl::StatusOr<Value> MinOrMax(const Value& input, const CallArgs& args, bool is_max) {
  ASSIGN_OR_RETURN(BoundArgs b,
                   BindArgs({is_max ? "max" : "min", {"case_sensitive", "attribute"}}, args));
  ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(input));
  if (items.empty()) return Value::Undefined("No aggregated item, sequence was empty.");
  ASSIGN_OR_RETURN(AttrGetter getter,
                   AttrGetter::Create(b.Get(1), !Truthy(b.Get(0, Value::Bool(false)))));
  size_t best = 0;
  ASSIGN_OR_RETURN(Value best_key, getter(items[0]));
  for (size_t i = 1; i < items.size(); ++i) {
    ASSIGN_OR_RETURN(Value key, getter(items[i]));
    ASSIGN_OR_RETURN(bool better, CompareOp(is_max ? ">" : "<", key, best_key));
    if (better) {
      best = i;
      best_key = std::move(key);
    }
  }
  return items[best];
}

bool IsUnhashable(const Value& v) {
  return v.is_dict() || (v.is_sequence() && v.as_seq().kind == SeqKind::kList);
}

}  // namespace

absl::StatusOr<Value> FilterMap(const Value& input, const CallArgs& args) {
  if (!Truthy(input)) return Generator({});
  ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(input));
  std::vector<Value> out;
  bool by_attribute = args.positional.empty() &&
                      std::any_of(args.keyword.begin(), args.keyword.end(),
                                  [](const auto& kw) { return kw.first == "attribute"; });
  if (by_attribute) {
    ASSIGN_OR_RETURN(BoundArgs b, BindArgs({"map", {"attribute", "default"}}, args));
    std::optional<Value> fallback;
    if (b.Has(1) && !b.Get(1).is_none()) fallback = b.Get(1);
    ASSIGN_OR_RETURN(AttrGetter getter, AttrGetter::Create(b.Get(0), false, fallback));
    for (const Value& item : items) {
      ASSIGN_OR_RETURN(Value v, getter(item));
      out.push_back(std::move(v));
    }
    return Generator(std::move(out));
  }
  if (args.positional.empty()) return absl::InvalidArgumentError("map requires a filter argument");
  const Value& name = args.positional[0];
  if (!name.is_string() || GetFilterSupport(name.as_string()) != BuiltinSupport::kSupported) {
    ASSIGN_OR_RETURN(std::string shown, PyStr(name));
    return absl::InvalidArgumentError(StrCat("No filter named '", shown, "'."));
  }
  CallArgs filter_args = Rest(args, 1);
  for (const Value& item : items) {
    ASSIGN_OR_RETURN(Value v, ApplyFilter(name.as_string(), item, filter_args));
    out.push_back(std::move(v));
  }
  return Generator(std::move(out));
}

absl::StatusOr<Value> FilterSelect(const Value& input, const CallArgs& args) {
  return SelectOrReject(input, args, true, false);
}
absl::StatusOr<Value> FilterReject(const Value& input, const CallArgs& args) {
  return SelectOrReject(input, args, false, false);
}
absl::StatusOr<Value> FilterSelectAttr(const Value& input, const CallArgs& args) {
  return SelectOrReject(input, args, true, true);
}
absl::StatusOr<Value> FilterRejectAttr(const Value& input, const CallArgs& args) {
  return SelectOrReject(input, args, false, true);
}

absl::StatusOr<Value> FilterSort(const Value& input, const CallArgs& args) {
  ASSIGN_OR_RETURN(BoundArgs b,
                   BindArgs({"sort", {"reverse", "case_sensitive", "attribute"}}, args));
  bool ignore_case = !Truthy(b.Get(1, Value::Bool(false)));
  // A comma-separated attribute sorts by several keys.
  std::vector<AttrGetter> getters;
  Value attribute = b.Get(2);
  if (attribute.is_string()) {
    for (const std::string& part : PySplit(attribute.as_string(), ",", -1)) {
      ASSIGN_OR_RETURN(AttrGetter g, AttrGetter::Create(Value::Str(part), ignore_case));
      getters.push_back(std::move(g));
    }
  } else {
    ASSIGN_OR_RETURN(AttrGetter g, AttrGetter::Create(attribute, ignore_case));
    getters.push_back(std::move(g));
  }
  ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(input));
  std::vector<Value> keys;
  for (const Value& item : items) {
    std::vector<Value> key;
    for (const AttrGetter& g : getters) {
      ASSIGN_OR_RETURN(Value k, g(item));
      key.push_back(std::move(k));
    }
    keys.push_back(Value::Seq(std::move(key)));
  }
  ASSIGN_OR_RETURN(std::vector<Value> sorted,
                   SortByKeys(std::move(items), keys, Truthy(b.Get(0, Value::Bool(false)))));
  return Value::Seq(std::move(sorted));
}

absl::StatusOr<Value> FilterDictSort(const Value& input, const CallArgs& args) {
  ASSIGN_OR_RETURN(BoundArgs b, BindArgs({"dictsort", {"case_sensitive", "by", "reverse"}}, args));
  if (input.is_undefined()) return UndefinedError(input);
  if (!input.is_dict()) {
    return absl::InvalidArgumentError(
        StrCat("'", PyTypeName(input), "' object has no attribute 'items'"));
  }
  Value by = b.Get(1, Value::Str("key"));
  if (!by.is_string() || (by.as_string() != "key" && by.as_string() != "value")) {
    return absl::InvalidArgumentError("You can only sort by either \"key\" or \"value\"");
  }
  size_t pos = by.as_string() == "key" ? 0 : 1;
  bool ignore_case = !Truthy(b.Get(0, Value::Bool(false)));
  std::vector<Value> items;
  std::vector<Value> keys;
  for (const auto& [k, v] : input.as_dict().entries) {
    items.push_back(Value::Seq({k, v}, SeqKind::kTuple));
    Value key = pos == 0 ? k : v;
    if (ignore_case && key.is_string()) key = Value::Str(PyLower(key.as_string()));
    keys.push_back(std::move(key));
  }
  ASSIGN_OR_RETURN(std::vector<Value> sorted,
                   SortByKeys(std::move(items), keys, Truthy(b.Get(2, Value::Bool(false)))));
  return Value::Seq(std::move(sorted));
}

absl::StatusOr<Value> FilterUnique(const Value& input, const CallArgs& args) {
  ASSIGN_OR_RETURN(BoundArgs b, BindArgs({"unique", {"case_sensitive", "attribute"}}, args));
  ASSIGN_OR_RETURN(AttrGetter getter,
                   AttrGetter::Create(b.Get(1), !Truthy(b.Get(0, Value::Bool(false)))));
  ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(input));
  std::vector<Value> seen;
  std::vector<Value> out;
  for (Value& item : items) {
    ASSIGN_OR_RETURN(Value key, getter(item));
    if (IsUnhashable(key)) {
      return absl::InvalidArgumentError(StrCat("unhashable type: '", PyTypeName(key), "'"));
    }
    bool dup =
        std::any_of(seen.begin(), seen.end(), [&](const Value& s) { return PyEquals(s, key); });
    if (dup) continue;
    seen.push_back(std::move(key));
    out.push_back(std::move(item));
  }
  return Generator(std::move(out));
}

absl::StatusOr<Value> FilterMin(const Value& input, const CallArgs& args) {
  return MinOrMax(input, args, false);
}
absl::StatusOr<Value> FilterMax(const Value& input, const CallArgs& args) {
  return MinOrMax(input, args, true);
}

absl::StatusOr<Value> FilterSum(const Value& input, const CallArgs& args) {
  ASSIGN_OR_RETURN(BoundArgs b, BindArgs({"sum", {"attribute", "start"}}, args));
  ASSIGN_OR_RETURN(AttrGetter getter, AttrGetter::Create(b.Get(0), false));
  ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(input));
  Value total = b.Get(1, Value::Int(0));
  if (total.is_string()) {
    return absl::InvalidArgumentError("sum() can't sum strings [use ''.join(seq) instead]");
  }
  for (const Value& item : items) {
    ASSIGN_OR_RETURN(Value v, getter(item));
    ASSIGN_OR_RETURN(total, BinaryOp("+", total, v));
  }
  return total;
}

absl::StatusOr<Value> FilterJoin(const Value& input, const CallArgs& args) {
  ASSIGN_OR_RETURN(BoundArgs b, BindArgs({"join", {"d", "attribute"}}, args));
  ASSIGN_OR_RETURN(std::string sep, PyStr(b.Get(0, Value::Str(""))));
  ASSIGN_OR_RETURN(AttrGetter getter, AttrGetter::Create(b.Get(1), false));
  ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(input));
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    ASSIGN_OR_RETURN(Value v, getter(items[i]));
    ASSIGN_OR_RETURN(std::string s, PyStr(v));
    if (i > 0) out.append(sep);
    out.append(s);
  }
  return Value::Str(std::move(out));
}

absl::StatusOr<Value> FilterFirst(const Value& input, const CallArgs& args) {
  RETURN_IF_ERROR(BindArgs({"first", {}}, args).status());
  ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(input));
  if (items.empty()) return Value::Undefined("No first item, sequence was empty.");
  return items.front();
}

absl::StatusOr<Value> FilterLast(const Value& input, const CallArgs& args) {
  RETURN_IF_ERROR(BindArgs({"last", {}}, args).status());
  bool reversible = input.is_undefined() || input.is_string() || input.is_dict() ||
                    (input.is_sequence() && input.as_seq().kind != SeqKind::kGenerator);
  if (!reversible) {
    return absl::InvalidArgumentError(StrCat("'", PyTypeName(input), "' object is not reversible"));
  }
  ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(input));
  if (items.empty()) return Value::Undefined("No last item, sequence was empty.");
  return items.back();
}

absl::StatusOr<Value> FilterList(const Value& input, const CallArgs& args) {
  RETURN_IF_ERROR(BindArgs({"list", {}}, args).status());
  ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(input));
  return Value::Seq(std::move(items));
}

absl::StatusOr<Value> FilterItems(const Value& input, const CallArgs& args) {
  RETURN_IF_ERROR(BindArgs({"items", {}}, args).status());
  if (input.is_undefined()) return Generator({});
  if (!input.is_dict())
    return absl::InvalidArgumentError("Can only get item pairs from a mapping.");
  std::vector<Value> out;
  for (const auto& [k, v] : input.as_dict().entries)
    out.push_back(Value::Seq({k, v}, SeqKind::kTuple));
  return Generator(std::move(out));
}

absl::StatusOr<Value> FilterReverse(const Value& input, const CallArgs& args) {
  RETURN_IF_ERROR(BindArgs({"reverse", {}}, args).status());
  if (input.is_string()) {
    std::u32string cps = DecodeUtf8(input.as_string());
    std::reverse(cps.begin(), cps.end());
    return AsMarkupLike(input, Value::Str(EncodeUtf8(cps)));
  }
  absl::StatusOr<std::vector<Value>> items = Iterate(input);
  if (!items.ok()) return absl::InvalidArgumentError("argument must be iterable");
  std::reverse(items->begin(), items->end());
  // reversed() gives an iterator; a generator is not reversible, so jinja2
  // falls back to a reversed list.
  bool was_generator = input.is_sequence() && input.as_seq().kind == SeqKind::kGenerator;
  return Value::Seq(std::move(*items), was_generator ? SeqKind::kList : SeqKind::kGenerator);
}

}  // namespace tokenfab::jinja
