#include "worker/chat/jinja_value.h"

#include <cmath>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "worker/chat/jinja_json.h"

namespace tokenfab::jinja {
namespace {

std::string Str(const Value& v) {
  absl::StatusOr<std::string> s = PyStr(v);
  return s.ok() ? *s : "ERROR: " + std::string(s.status().message());
}

TEST(JinjaValueTest, FloatReprMatchesPython) {
  EXPECT_EQ(PyFloatRepr(1.0), "1.0");
  EXPECT_EQ(PyFloatRepr(-0.0), "-0.0");
  EXPECT_EQ(PyFloatRepr(0.1 + 0.2), "0.30000000000000004");
  EXPECT_EQ(PyFloatRepr(1e16), "1e+16");
  EXPECT_EQ(PyFloatRepr(1e15), "1000000000000000.0");
  EXPECT_EQ(PyFloatRepr(0.0001), "0.0001");
  EXPECT_EQ(PyFloatRepr(0.00001), "1e-05");
  EXPECT_EQ(PyFloatRepr(1.5e300), "1.5e+300");
  EXPECT_EQ(PyFloatRepr(123456789.125), "123456789.125");
  EXPECT_EQ(PyFloatRepr(5e-324), "5e-324");
  EXPECT_EQ(PyFloatRepr(INFINITY), "inf");
  EXPECT_EQ(PyFloatRepr(std::nan("")), "nan");
}

TEST(JinjaValueTest, StrAndReprOfContainers) {
  Value list = Value::Seq(
      {Value::Int(1), Value::Str("a"), Value::None(), Value::Bool(true), Value::Float(2.0)});
  EXPECT_EQ(Str(list), "[1, 'a', None, True, 2.0]");
  EXPECT_EQ(Str(Value::Seq({Value::Int(1)}, SeqKind::kTuple)), "(1,)");
  Dict d;
  d.Set(Value::Str("k"), Value::Seq({}));
  d.Set(Value::Int(2), Value::Str("it's"));
  EXPECT_EQ(Str(Value::MakeDict(d)), "{'k': [], 2: \"it's\"}");
  EXPECT_EQ(Str(Value::Undefined("x")), "");
  EXPECT_EQ(Str(Value::Markup("<b>")), "<b>");
  EXPECT_EQ(*PyRepr(Value::Markup("<b>")), "Markup('<b>')");
  EXPECT_THAT(Str(Value::Seq({}, SeqKind::kGenerator)),
              ::testing::HasSubstr("cannot print a generator"));
}

TEST(JinjaValueTest, TruthinessAndEqualityFollowPython) {
  EXPECT_FALSE(Truthy(Value::Undefined("")));
  EXPECT_FALSE(Truthy(Value::Str("")));
  EXPECT_FALSE(Truthy(Value::Float(0.0)));
  EXPECT_FALSE(Truthy(Value::Seq({})));
  EXPECT_TRUE(Truthy(Value::Seq({}, SeqKind::kGenerator)));
  EXPECT_TRUE(PyEquals(Value::Int(1), Value::Float(1.0)));
  EXPECT_TRUE(PyEquals(Value::Bool(true), Value::Int(1)));
  EXPECT_FALSE(PyEquals(Value::Seq({Value::Int(1)}), Value::Seq({Value::Int(1)}, SeqKind::kTuple)));
  EXPECT_TRUE(PyEquals(Value::Undefined("a"), Value::Undefined("b")));
  EXPECT_FALSE(PyEquals(Value::None(), Value::Bool(false)));
}

TEST(JinjaValueTest, OrderingFailsForMixedTypes) {
  EXPECT_EQ(*PyCompare(Value::Str("a"), Value::Str("b")), -1);
  EXPECT_EQ(*PyCompare(Value::Seq({Value::Int(1), Value::Int(2)}), Value::Seq({Value::Int(1)})), 1);
  absl::StatusOr<int> bad = PyCompare(Value::Str("a"), Value::Int(1), ">=");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), "'>=' not supported between instances of 'str' and 'int'");
}

TEST(JinjaJsonTest, ReadsJsonKeepingKeyOrder) {
  auto v = ValueFromJson(nlohmann::ordered_json::parse(R"({"z": 1, "a": [1.5, true, null, "x"]})"));
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(Str(*v), "{'z': 1, 'a': [1.5, True, None, 'x']}");
  EXPECT_FALSE(ValueFromJson(nlohmann::json(18446744073709551615ull)).ok());
}

TEST(JinjaJsonTest, DumpsLikePythonJsonDumps) {
  auto v = ValueFromJson(nlohmann::ordered_json::parse(
      R"({"s": "é\"\\\n\u0001", "f": 1.0, "e": 1e-7, "l": [], "d": {}, "n": [1, {"k": null}]})"));
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(
      *DumpPythonJson(*v, {}),
      R"({"s": "é\"\\\n\u0001", "f": 1.0, "e": 1e-07, "l": [], "d": {}, "n": [1, {"k": null}]})");
  JsonDumpOptions indented;
  indented.indent = "  ";
  auto small = ValueFromJson(nlohmann::ordered_json::parse(R"({"a": [1, {}], "b": "x"})"));
  EXPECT_EQ(*DumpPythonJson(*small, indented),
            "{\n  \"a\": [\n    1,\n    {}\n  ],\n  \"b\": \"x\"\n}");
  JsonDumpOptions ascii;
  ascii.ensure_ascii = true;
  EXPECT_EQ(*DumpPythonJson(Value::Str("é😀\x7f"), ascii), R"("\u00e9\ud83d\ude00\u007f")");
  EXPECT_EQ(*DumpPythonJson(Value::Float(INFINITY), {}), "Infinity");
  EXPECT_FALSE(DumpPythonJson(Value::Undefined("u"), {}).ok());
}

}  // namespace
}  // namespace tokenfab::jinja
