#include "worker/chat/chat_template.h"

#include <chrono>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace tokenfab {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::ordered_json;

// Renders `source` with `context` (JSON text); the error message on failure.
std::string Render(const std::string& source, const std::string& context = "{}") {
  auto tmpl = ChatTemplate::Create(source);
  if (!tmpl.ok()) return "CREATE ERROR: " + std::string(tmpl.status().message());
  auto out = (*tmpl)->Render(Json::parse(context));
  if (!out.ok()) return "RENDER ERROR: " + std::string(out.status().message());
  return *out;
}

absl::Status CreateError(const std::string& source) {
  auto tmpl = ChatTemplate::Create(source);
  return tmpl.ok() ? absl::OkStatus() : tmpl.status();
}

TEST(ChatTemplateTest, PrintsLiteralsLikePython) {
  EXPECT_EQ(Render("{{ 1 }}|{{ 1.0 }}|{{ 2.5e-7 }}|{{ 1e16 }}|{{ 10 / 4 }}|{{ 7 // 2 }}"),
            "1|1.0|2.5e-07|1e+16|2.5|3");
  EXPECT_EQ(Render("{{ true }}{{ False }}{{ none }}{{ None }}"), "TrueFalseNoneNone");
  EXPECT_EQ(Render("{{ [1, 'a', none, (2,)] }}"), "[1, 'a', None, (2,)]");
  EXPECT_EQ(Render("{{ {'k': \"it's\"} }}"), "{'k': \"it's\"}");
  EXPECT_EQ(Render("{{ 'a\\tb\\u00e9\\x41' }}"),
            "a\tb\xC3\xA9"
            "A");
}

TEST(ChatTemplateTest, TrimBlocksAndLstripBlocks) {
  EXPECT_EQ(Render("{% if true %}\nyes\n{% endif %}\nafter"), "yes\nafter");
  EXPECT_EQ(Render("  {% if true %}\n    x\n  {% endif %}\ndone"), "    x\ndone");
  // lstrip_blocks does not apply to {{ }}; trim_blocks does not apply after }}.
  EXPECT_EQ(Render("  {{ 'v' }}\nend"), "  v\nend");
  // One trailing newline of the template is dropped (keep_trailing_newline=False).
  EXPECT_EQ(Render("a\n\n"), "a\n");
  EXPECT_EQ(Render("a\r\nb\r\n"), "a\nb");
}

TEST(ChatTemplateTest, WhitespaceControlSigns) {
  EXPECT_EQ(Render("a   {%- if true -%}   b   {%- endif -%}   c"), "abc");
  EXPECT_EQ(Render("x \n {{- 1 -}} \n y"), "x1y");
  EXPECT_EQ(Render("  {%+ if true %}x{% endif %}"), "  x");
  EXPECT_EQ(Render("{% if true +%}\nx{% endif %}"), "\nx");
  EXPECT_EQ(Render("a\n{# comment #}\nb\n  {#- c -#}  \nc"), "a\nbc");
  EXPECT_EQ(Render("{% raw %}{{ x }}{% endraw %}"), "{{ x }}");
}

TEST(ChatTemplateTest, ForLoopVariables) {
  EXPECT_EQ(Render("{% for x in xs %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}"
                   "{{ loop.first }}{{ loop.last }}{{ loop.length }};{% endfor %}",
                   R"({"xs": [5, 6]})"),
            "102TrueFalse2;211FalseTrue2;");
  EXPECT_EQ(
      Render("{% for x in xs %}{{ loop.previtem }}-{{ loop.nextitem }}-{{ loop.cycle('a', 'b') }};"
             "{% endfor %}",
             R"({"xs": [1, 2]})"),
      "-2-a;1--b;");
}

TEST(ChatTemplateTest, ForElseItemsAndFilteredLoops) {
  EXPECT_EQ(Render("{% for x in [] %}x{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(Render("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}",
                   R"({"d": {"b": 1, "a": 2}})"),
            "b=1;a=2;");
  EXPECT_EQ(
      Render("{% for x in xs if x > 1 %}{{ loop.index }}/{{ loop.length }}:{{ x }} {% endfor %}",
             R"({"xs": [3, 1, 2]})"),
      "1/2:3 2/2:2 ");
  // jinja2 runs the else block when no iteration reached the end of the body.
  EXPECT_EQ(Render("{% for x in [1] %}{% break %}{% else %}E{% endfor %}"), "E");
}

TEST(ChatTemplateTest, BreakAndContinue) {
  EXPECT_EQ(Render("{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}"
                   "{% if x == 5 %}{% break %}{% endif %}{{ x }}{% endfor %}"),
            "0134");
  EXPECT_EQ(Render("{% for x in [1, 2] %}{% set s %}{% break %}{% endset %}{{ x }}{% endfor %}"),
            "");
}

TEST(ChatTemplateTest, ScopesFollowJinja) {
  // A set inside a loop body lives for that iteration only; `if` has no scope.
  EXPECT_EQ(Render("{% set x = 0 %}{% for i in [1, 2] %}{{ x }}{% set x = i %}{% endfor %}{{ x }}"),
            "000");
  EXPECT_EQ(Render("{% if true %}{% set z = 5 %}{% endif %}{{ z }}"), "5");
  EXPECT_EQ(Render("{% for i in [1] %}{% endfor %}[{{ i }}]"), "[]");
}

TEST(ChatTemplateTest, SetForms) {
  EXPECT_EQ(Render("{% set a, b = 1, 2 %}{% set t = 3, 4 %}{{ a }}{{ b }}{{ t }}"), "12(3, 4)");
  EXPECT_EQ(Render("{% set body %}\n  Hi {{ 7 }}\n{% endset %}[{{ body }}]"), "[  Hi 7\n]");
  EXPECT_EQ(Render("{% set up | upper | trim %} x {% endset %}[{{ up }}]"), "[X]");
}

TEST(ChatTemplateTest, NamespaceAssignmentCrossesLoopScopes) {
  EXPECT_EQ(Render("{% set ns = namespace(n=0) %}{% for m in ms %}{% if m.role == 'user' %}"
                   "{% set ns.n = ns.n + 1 %}{% endif %}{% endfor %}{{ ns.n }}",
                   R"({"ms": [{"role": "user"}, {"role": "assistant"}, {"role": "user"}]})"),
            "2");
  EXPECT_THAT(Render("{% set d = {} %}{% set d.x = 1 %}"),
              HasSubstr("cannot assign attribute on non-namespace object"));
}

TEST(ChatTemplateTest, MacrosAndCallBlocks) {
  EXPECT_EQ(Render("{% macro greet(name, p='!') %}Hi {{ name }}{{ p }}{% endmacro %}"
                   "{{ greet('Bo') }} {{ greet('Al', p='?') }} [{{ greet() }}]"),
            "Hi Bo! Hi Al? [Hi !]");
  EXPECT_EQ(Render("{% macro wrap(t) %}<{{ t }}>{{ caller() }}</{{ t }}>{% endmacro %}"
                   "{% call wrap('b') %}x{% endcall %}"),
            "<b>x</b>");
  EXPECT_EQ(
      Render(
          "{% macro f(n) %}{% if n > 0 %}{{ n }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(3) }}"),
      "321");
  EXPECT_THAT(Render("{% macro f(a) %}{% endmacro %}{{ f(1, 2) }}"),
              HasSubstr("macro 'f' takes not more than 1 argument(s)"));
}

TEST(ChatTemplateTest, WithFilterPrintAndGenerationBlocks) {
  EXPECT_EQ(Render("{% with a = 1, b = 2 %}{{ a }}{{ b }}{% endwith %}[{{ a }}]"), "12[]");
  EXPECT_EQ(Render("{% filter upper %}shout{% endfilter %}{% print 'p', 1 %}"), "SHOUTp1");
  // Hugging Face's AssistantTracker extension: the body renders as is.
  EXPECT_EQ(Render("{% generation %}answer{% endgeneration %}"), "answer");
}

TEST(ChatTemplateTest, Operators) {
  EXPECT_EQ(Render("{{ -7 // 2 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 2 ** -1 }} {{ 1 + 2 * 3 }}"),
            "-4 2 1024 0.5 7");
  EXPECT_EQ(Render("{{ 'a' ~ 1 ~ none ~ nope }}|{{ 'ab' * 2 }}|{{ [1] + [2] }}"),
            "a1None|abab|[1, 2]");
  EXPECT_EQ(Render("{{ 1 < 2 < 3 }}{{ 1 == 1.0 }}{{ 'b' in 'abc' }}{{ 3 not in [1] }}"),
            "TrueTrueTrueTrue");
  EXPECT_EQ(Render("{{ 0 or 'x' }}|{{ 'a' and 'b' }}|{{ 'y' if false }}|{{ 1 if none else 2 }}"),
            "x|b||2");
  EXPECT_EQ(Render("{{ '%s=%05.1f' % ('pi', 3.14159) }}"), "pi=003.1");
  EXPECT_THAT(Render("{{ 1 / 0 }}"), HasSubstr("division by zero"));
}

TEST(ChatTemplateTest, AttributeItemAndSliceAccess) {
  const char* ctx = R"({"d": {"a": [1, 2, 3], "n": {"k": "v"}}, "s": "héllo"})";
  EXPECT_EQ(Render("{{ d.a[1] }}{{ d['n'].k }}{{ d.a.0 }}{{ d.a[-1] }}", ctx), "2v13");
  EXPECT_EQ(Render("{{ d.a[::-1] }}{{ d.a[1:] }}{{ s[1:3] }}{{ s[::-1] }}", ctx),
            "[3, 2, 1][2, 3]élolléh");
  // Missing attributes and items are Undefined, which prints as nothing.
  EXPECT_EQ(Render("[{{ d.missing }}{{ d.a[9] }}{{ s.nope }}]", ctx), "[]");
}

TEST(ChatTemplateTest, UndefinedBehavesLikeJinja) {
  EXPECT_EQ(Render("[{{ nope }}]{% for x in nope %}x{% endfor %}{{ nope is defined }}"
                   "{{ nope is undefined }}{{ nope|length }}{{ nope|default('d') }}"),
            "[]FalseTrue0d");
  EXPECT_THAT(Render("{{ nope.attr }}"), HasSubstr("'nope' is undefined"));
  EXPECT_THAT(Render("{{ nope + 'x' }}"), HasSubstr("'nope' is undefined"));
  EXPECT_THAT(Render("{{ d.missing + 1 }}", R"({"d": {}})"),
              HasSubstr("'dict object' has no attribute 'missing'"));
}

TEST(ChatTemplateTest, Tests) {
  const char* ctx =
      R"({"xs": [1], "d": {"a": 1}, "s": "x", "n": 3, "f": 1.5, "t": true, "z": null})";
  EXPECT_EQ(
      Render(
          "{{ xs is sequence }}{{ d is mapping }}{{ s is string }}{{ n is number }}{{ n is integer "
          "}}"
          "{{ f is float }}{{ t is boolean }}{{ z is none }}{{ s is iterable }}{{ n is iterable }}",
          ctx),
      "TrueTrueTrueTrueTrueTrueTrueTrueTrueFalse");
  EXPECT_EQ(Render("{{ n is odd }}{{ n is even }}{{ 9 is divisibleby 3 }}{{ s is equalto 'x' }}"
                   "{{ s is eq 'y' }}{{ t is true }}{{ t is false }}{{ n is not none }}",
                   ctx),
            "TrueFalseTrueTrueFalseTrueFalseTrue");
}

TEST(ChatTemplateTest, StringFilters) {
  EXPECT_EQ(
      Render("{{ '  a b  '|trim }}|{{ 'ab'|upper }}|{{ 'AB'|lower }}|{{ 'hello wORLD'|title }}|"
             "{{ 'hELLO'|capitalize }}|{{ 'aaa'|replace('a', 'b', 2) }}|{{ 1.0|string }}"),
      "a b|AB|ab|Hello World|Hello|bba|1.0");
  EXPECT_EQ(Render("{{ 'a\\nb'|indent(2, true) }}|{{ '<b>'|e }}|{{ 'x'|safe }}"),
            "  a\n  b|&lt;b&gt;|x");
}

TEST(ChatTemplateTest, SequenceFilters) {
  const char* ctx =
      R"({"ms": [{"role": "system", "content": "s"}, {"role": "user", "content": "u1"},
                               {"role": "user", "content": "u2"}], "w": ["b", "A", "a"]})";
  EXPECT_EQ(
      Render("{{ ms|selectattr('role', 'equalto', 'user')|map(attribute='content')|join(',') }}",
             ctx),
      "u1,u2");
  EXPECT_EQ(Render("{{ ms|rejectattr('role', 'eq', 'user')|list|length }}", ctx), "1");
  EXPECT_EQ(Render("{{ w|sort }}{{ w|unique|list }}{{ w|first }}{{ w|last }}{{ w|length }}", ctx),
            "['A', 'a', 'b']['b', 'A']ba3");
  EXPECT_EQ(
      Render("{{ range(6)|select('odd')|list }}{{ range(3)|reject('even')|list }}{{ [3, 1]|max }}"),
      "[1, 3, 5][1]3");
  EXPECT_EQ(
      Render(
          "{{ ['1', '2.5', 'x']|map('int')|list }}{{ [1.5, 2]|sum }}{{ -3|abs }}{{ 2.5|round }}"),
      "[1, 2, 0]3.532.0");
  EXPECT_EQ(Render("{% for k, v in {'b': 1}|items %}{{ k }}{{ v }}{% endfor %}{{ {'b': 2, 'a': "
                   "1}|dictsort }}"),
            "b1[('a', 1), ('b', 2)]");
}

TEST(ChatTemplateTest, ToJsonMatchesPythonJsonDumps) {
  const char* ctx = R"({"t": {"name": "f", "n": 1.0, "ok": true, "x": null, "l": [1, "é"]}})";
  EXPECT_EQ(Render("{{ t|tojson }}", ctx),
            R"({"name": "f", "n": 1.0, "ok": true, "x": null, "l": [1, "é"]})");
  EXPECT_EQ(Render("{{ t.l|tojson(indent=2) }}", ctx), "[\n  1,\n  \"é\"\n]");
  EXPECT_EQ(Render("{{ {'b': 1, 'a': [{}, []]}|tojson(sort_keys=true) }}"),
            R"({"a": [{}, []], "b": 1})");
  EXPECT_EQ(Render("{{ 'é\"\\n'|tojson(ensure_ascii=true) }}"), R"("\u00e9\"\n")");
}

TEST(ChatTemplateTest, PythonStringAndDictMethods) {
  EXPECT_EQ(Render("{{ ' x '.strip() }}{{ 'a,b'.split(',') }}{{ 'ab'.startswith('a') }}{{ "
                   "'ab'.endswith('a') }}"
                   "{{ 'ab'.upper() }}{{ 'a-b'.replace('-', '+') }}{{ '{}:{}'.format(1, 'x') }}"),
            "x['a', 'b']TrueFalseABa+b1:x");
  EXPECT_EQ(Render("{{ d.get('a') }}{{ d.get('z', 0) }}{{ d.keys()|list }}{{ d.values()|list }}",
                   R"({"d": {"a": 1}})"),
            "10['a'][1]");
  // The sandbox forbids mutating methods.
  EXPECT_THAT(Render("{{ xs.append(1) }}", R"({"xs": []})"),
              HasSubstr("access to attribute 'append' of 'list' object is unsafe."));
}

TEST(ChatTemplateTest, MarkupEscapesPlainOperands) {
  // markupsafe semantics, which jinja2 applies even with autoescape off.
  EXPECT_EQ(
      Render("{{ 'a'|safe + '<b>' }}|{{ '<b>' + 'a'|safe }}|{{ ('<'|safe).join(['<', '>']) }}"),
      "a&lt;b&gt;|&lt;b&gt;a|&lt;<&gt;");
  EXPECT_EQ(Render("{{ 'a'|safe ~ '<' }}"), "a<");
}

TEST(ChatTemplateTest, RaiseExceptionReturnsTheTemplatesMessage) {
  auto tmpl = ChatTemplate::Create(
      "{% if x %}{{ raise_exception('Roles must alternate: ' ~ x) }}{% endif %}ok");
  ASSERT_TRUE(tmpl.ok()) << tmpl.status();
  auto out = (*tmpl)->Render(Json{{"x", "user"}});
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(out.status().message(), "Roles must alternate: user");
  auto fine = (*tmpl)->Render(Json{{"x", false}});
  ASSERT_TRUE(fine.ok()) << fine.status();
  EXPECT_EQ(*fine, "ok");
}

TEST(ChatTemplateTest, StrftimeNowUsesTheInjectedClock) {
  ChatTemplate::Options options;
  options.now = [] {
    return std::chrono::system_clock::time_point(std::chrono::seconds(1726401600));
  };
  auto tmpl =
      ChatTemplate::Create("{{ strftime_now('%Y') }}|{{ strftime_now('%d %b %Y') }}", options);
  ASSERT_TRUE(tmpl.ok()) << tmpl.status();
  auto out = (*tmpl)->Render(Json::object());
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "2024|15 Sep 2024");  // noon UTC: the same date in UTC-11..UTC+11
}

TEST(ChatTemplateTest, RenderErrorsNameLineAndColumn) {
  auto tmpl = ChatTemplate::Create("line one\n{{ 'x' + 1 }}");
  ASSERT_TRUE(tmpl.ok());
  auto out = (*tmpl)->Render(Json::object());
  ASSERT_FALSE(out.ok());
  EXPECT_THAT(std::string(out.status().message()), HasSubstr("line 2, column 8"));
  EXPECT_THAT(std::string(out.status().message()),
              HasSubstr("can only concatenate str (not \"int\") to str"));
}

TEST(ChatTemplateTest, UnsupportedSyntaxFailsAtCreateWithLineAndColumn) {
  struct Case {
    const char* source;
    const char* message;
  };
  const Case cases[] = {
      {"ok\n  {% include 'x' %}", "line 2, column 6: the 'include' tag is not supported"},
      {"{% extends 'base' %}", "line 1, column 4: the 'extends' tag is not supported"},
      {"{% block b %}{% endblock %}", "the 'block' tag is not supported"},
      {"{{ x|groupby('a') }}", "line 1, column 6: the filter 'groupby' is not supported"},
      {"{{ x|nosuchfilter }}", "No filter named 'nosuchfilter'"},
      {"{{ x is nosuchtest }}", "line 1, column 9: No test named 'nosuchtest'"},
      {"{% for x in xs recursive %}{% endfor %}", "recursive for loops are not supported"},
      {"{{ f(*args) }}", "*args and **kwargs in calls are not supported"},
      {"{% frobnicate %}", "line 1, column 4: Encountered unknown tag 'frobnicate'"},
      {"{% if x %}", "unexpected end of template, expected 'elif' or 'else' or 'endif'"},
      {"{% break %}", "'break' outside loop"},
      {"{{ 'unterminated }}", "unexpected char"},
      {"{{ (1 }}", "unexpected '}'"},
      {"{# never closed", "Missing end of comment tag"},
      {"a\n\n   {{ 1 +* 2 }}", "line 3, column 10: unexpected '*'"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.source);
    absl::Status status = CreateError(c.source);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(status.message()), HasSubstr(c.message));
  }
}

TEST(ChatTemplateTest, RenderChatBuildsTheHuggingFaceContext) {
  auto tmpl = ChatTemplate::Create(
      "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
      "{% if add_generation_prompt %}<assistant>{% endif %}{{ tools is none }}{{ documents is none "
      "}}"
      "{{ eos_token }}{{ date_string }}");
  ASSERT_TRUE(tmpl.ok()) << tmpl.status();
  ChatRenderOptions options;
  options.bos_token = "<s>";
  options.eos_token = "</s>";
  options.extra = Json{{"date_string", "26 Jul 2024"}};
  Json messages = Json::array({Json{{"role", "user"}, {"content", "hi"}}});
  auto out = RenderChat(**tmpl, messages, options);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "<s><user>hi<assistant>TrueTrue</s>26 Jul 2024");

  options.add_generation_prompt = false;
  options.extra = Json{{"tools", Json::array({Json{{"name", "f"}}})}};
  out = RenderChat(**tmpl, messages, options);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "<s><user>hiFalseTrue</s>");
}

TEST(ChatTemplateTest, ToJsonKeepsInsertionOrderOfOrderedJson) {
  auto tmpl = ChatTemplate::Create("{{ tool|tojson }}");
  ASSERT_TRUE(tmpl.ok());
  Json context = Json::parse(R"({"tool": {"zeta": 1, "alpha": 2}})");
  auto out = (*tmpl)->Render(context);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, R"({"zeta": 1, "alpha": 2})");
  // A plain nlohmann::json has already sorted its keys.
  auto sorted = (*tmpl)->Render(nlohmann::json::parse(R"({"tool": {"zeta": 1, "alpha": 2}})"));
  ASSERT_TRUE(sorted.ok()) << sorted.status();
  EXPECT_EQ(*sorted, R"({"alpha": 2, "zeta": 1})");
}

TEST(ChatTemplateTest, RefusesRunawayTemplatesInsteadOfCrashing) {
  EXPECT_THAT(Render("{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}"),
              HasSubstr("the template nests too deeply"));
  EXPECT_THAT(
      Render("{% set ns = namespace(x=1) %}{% for i in range(1000) %}{% set ns.x = [ns.x] %}"
             "{% endfor %}"),
      HasSubstr("nested more than 256 levels"));
  EXPECT_THAT(Render("{% set ns = namespace() %}{% set ns.me = [ns] %}{{ ns }}"),
              HasSubstr("(or circular)"));
  EXPECT_THAT(Render("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}"),
              HasSubstr("maximum recursion depth exceeded"));
  EXPECT_THAT(
      Render("{% for a in range(100000) %}{% for b in range(1000) %}{% endfor %}{% endfor %}"),
      HasSubstr("loop iterations and macro calls"));
  EXPECT_THAT(Render("{{ 'x' * 100000000 }}"), HasSubstr("too large"));
}

TEST(ChatTemplateTest, RejectsNonObjectContextAndHugeRanges) {
  auto tmpl = ChatTemplate::Create("{{ range(200000)|length }}");
  ASSERT_TRUE(tmpl.ok());
  EXPECT_FALSE((*tmpl)->Render(Json::array()).ok());
  auto out = (*tmpl)->Render(Json::object());
  ASSERT_FALSE(out.ok());
  EXPECT_THAT(std::string(out.status().message()), HasSubstr("Range too big"));
}

}  // namespace
}  // namespace tokenfab
